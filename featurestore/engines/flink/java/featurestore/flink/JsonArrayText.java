package featurestore.flink;

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Optional;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ArrayNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.JsonNodeFactory;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.catalog.DataTypeFactory;
import org.apache.flink.table.data.DecimalData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.data.binary.BinaryStringData;
import org.apache.flink.table.functions.FunctionDefinition;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.table.runtime.functions.SqlJsonUtils;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.inference.ArgumentCount;
import org.apache.flink.table.types.inference.CallContext;
import org.apache.flink.table.types.inference.ConstantArgumentCount;
import org.apache.flink.table.types.inference.InputTypeStrategy;
import org.apache.flink.table.types.inference.Signature;
import org.apache.flink.table.types.inference.TypeInference;
import org.apache.flink.table.types.inference.TypeStrategies;
import org.apache.flink.table.types.logical.LogicalTypeRoot;

/**
 * {@code fs_json_array(v1, v2, ...)}: the text Flink's {@code JSON_ARRAY(v1, v2, ... NULL ON NULL)} returns,
 * byte for byte but for one thing (a negative zero DOUBLE is {@code -0.0}, not {@code 0.0}: the value as it is),
 * written directly instead of through a Jackson tree (which Flink builds, converts to Java
 * objects and serialises again for every row: 16% of the streaming job's JVM samples for the online rows).
 *
 * <p>It takes strings, timestamps and decimals as Flink's internal data ({@link StringData},
 * {@link TimestampData}, {@link DecimalData}: {@link #getTypeInference}) and returns a {@link StringData} of the
 * UTF-8 it writes, so no string is decoded into a Java String nor the result encoded back (with
 * java.lang.String they were: ~28% of the source thread's JVM samples with the parse's strings). A string's
 * UTF-8 is copied as it is, but for the escapes; bytes that are not valid UTF-8 (Flink's runtime makes none:
 * {@code fromString} writes a lone surrogate as {@code ?}, {@code CAST(bytes AS STRING)} decodes) would go
 * through a Java String, as before.
 *
 * <p>What {@code JSON_ARRAY} writes (Flink 2.3: {@code JsonGenerateUtils} nodes, {@code SqlJsonUtils.serializeJson}
 * with {@code USE_BIG_DECIMAL_FOR_FLOATS}): null as {@code null}; booleans; integers in decimal; a finite
 * DOUBLE as {@code BigDecimal.valueOf(d).toString()} ({@code 1.0E+20}, {@code 0.0000123}, and {@code -0.0}
 * as {@code 0.0}, which this function writes {@code -0.0}); NaN and the infinities as the strings {@code "NaN"}, {@code "Infinity"},
 * {@code "-Infinity"}; a string quoted with Jackson's escapes ({@code \"}, {@code \\}, {@code \b \t \n \f \r},
 * other control characters as backslash-u00XX in upper-case hex; everything else as is); a TIMESTAMP as
 * the string of {@code ISO_LOCAL_DATE_TIME}. Any other value (DECIMAL, FLOAT, ...) is written by Flink's own
 * node and serialiser, so the text is the same for every type. tests/test_stream_json_array.py compares the
 * two on random values of every column type.
 */
public final class JsonArrayText extends ScalarFunction {
    private static final byte[] HEX = "0123456789ABCDEF".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] NULL = ascii("null"), TRUE = ascii("true"), FALSE = ascii("false");

    private transient byte[] buf;
    private transient int len;

    public StringData eval(Object... values) {
        if (buf == null) {
            buf = new byte[256];
        }
        len = 0;
        put((byte) '[');
        for (int i = 0; i < values.length; i++) {
            if (i > 0) {
                put((byte) ',');
            }
            append(values[i]);
        }
        put((byte) ']');
        return StringData.fromBytes(Arrays.copyOf(buf, len));
    }

    /** Any number of arguments of any type; strings, timestamps and decimals bridged to Flink's internal
     * data, every other type to its default class (a type {@link #append} does not know fails as before). */
    @Override
    public TypeInference getTypeInference(DataTypeFactory typeFactory) {
        return TypeInference.newBuilder()
                .inputTypeStrategy(new InputTypeStrategy() {
                    @Override
                    public ArgumentCount getArgumentCount() {
                        return ConstantArgumentCount.any();
                    }

                    @Override
                    public Optional<List<DataType>> inferInputTypes(CallContext call, boolean throwOnFailure) {
                        List<DataType> out = new ArrayList<>();
                        for (DataType t : call.getArgumentDataTypes()) {
                            out.add(internal(t));
                        }
                        return Optional.of(out);
                    }

                    @Override
                    public List<Signature> getExpectedSignatures(FunctionDefinition definition) {
                        return Collections.singletonList(Signature.of(Signature.Argument.of("*")));
                    }
                })
                .outputTypeStrategy(TypeStrategies.explicit(DataTypes.STRING().bridgedTo(StringData.class)))
                .build();
    }

    private static DataType internal(DataType t) {
        LogicalTypeRoot root = t.getLogicalType().getTypeRoot();
        switch (root) {
            case CHAR:
            case VARCHAR:
                return t.bridgedTo(StringData.class);
            case TIMESTAMP_WITHOUT_TIME_ZONE:
                return t.bridgedTo(TimestampData.class);
            case DECIMAL:
                return t.bridgedTo(DecimalData.class);
            default:
                return t;
        }
    }

    private void append(Object v) {
        if (v == null) {
            put(NULL);
        } else if (v instanceof BinaryStringData) {
            quote(((BinaryStringData) v).toBytes());
        } else if (v instanceof Long || v instanceof Integer || v instanceof Short || v instanceof Byte) {
            putAscii(Long.toString(((Number) v).longValue()));
        } else if (v instanceof Boolean) {
            put(((Boolean) v).booleanValue() ? TRUE : FALSE);
        } else if (v instanceof TimestampData) {
            StringBuilder out = new StringBuilder(28);
            append(out, ((TimestampData) v).toLocalDateTime());
            putAscii(out);
        } else if (v instanceof DecimalData) {
            putAscii(viaJackson(((DecimalData) v).toBigDecimal()));
        } else if (v instanceof StringData) { // not binary: never made by Flink's runtime
            StringBuilder out = new StringBuilder(24);
            append(out, v.toString());
            putUtf8(out);
        } else { // a double, a float, bytes: ASCII text (a type it does not know fails)
            StringBuilder out = new StringBuilder(24);
            append(out, v);
            putAscii(out);
        }
    }

    /** A string's UTF-8, quoted with Jackson's escapes (they are all ASCII; every other byte is copied).
     * Bytes that are not valid UTF-8 go through a Java String and back, as with java.lang.String arguments. */
    private void quote(byte[] utf8) {
        if (!validUtf8(utf8)) {
            StringBuilder out = new StringBuilder(utf8.length + 2);
            quote(out, BinaryStringData.fromBytes(utf8).toString());
            putUtf8(out);
            return;
        }
        ensure(utf8.length + 2);
        put((byte) '"');
        for (byte b : utf8) {
            if ((b & 0xFF) >= 0x20 && b != '"' && b != '\\') {
                put(b);
                continue;
            }
            ensure(6);
            put((byte) '\\');
            switch (b) {
                case '"': put((byte) '"'); break;
                case '\\': put((byte) '\\'); break;
                case '\b': put((byte) 'b'); break;
                case '\t': put((byte) 't'); break;
                case '\n': put((byte) 'n'); break;
                case '\f': put((byte) 'f'); break;
                case '\r': put((byte) 'r'); break;
                default:
                    put((byte) 'u');
                    put((byte) '0');
                    put((byte) '0');
                    put(HEX[b >> 4]);
                    put(HEX[b & 0xF]);
            }
        }
        put((byte) '"');
    }

    /** Whether {@code b} is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
    static boolean validUtf8(byte[] b) {
        int i = 0, n = b.length;
        while (i < n) {
            int c = b[i] & 0xFF;
            if (c < 0x80) {
                i++;
                continue;
            }
            int extra, min;
            if (c >= 0xC2 && c <= 0xDF) {
                extra = 1;
                min = 0x80;
            } else if (c >= 0xE0 && c <= 0xEF) {
                extra = 2;
                min = 0x800;
            } else if (c >= 0xF0 && c <= 0xF4) {
                extra = 3;
                min = 0x10000;
            } else {
                return false;
            }
            if (i + extra >= n) {
                return false;
            }
            int cp = c & (0x3F >> extra);
            for (int k = 1; k <= extra; k++) {
                int d = b[i + k] & 0xFF;
                if ((d & 0xC0) != 0x80) {
                    return false;
                }
                cp = (cp << 6) | (d & 0x3F);
            }
            if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                return false;
            }
            i += extra + 1;
        }
        return true;
    }

    private void ensure(int more) {
        if (len + more > buf.length) {
            buf = Arrays.copyOf(buf, Math.max(buf.length * 2, len + more));
        }
    }

    private void put(byte b) {
        ensure(1);
        buf[len++] = b;
    }

    private void put(byte[] bytes) {
        ensure(bytes.length);
        System.arraycopy(bytes, 0, buf, len, bytes.length);
        len += bytes.length;
    }

    private void putAscii(CharSequence s) {
        int n = s.length();
        ensure(n);
        for (int i = 0; i < n; i++) {
            buf[len++] = (byte) s.charAt(i);
        }
    }

    private void putUtf8(CharSequence s) {
        put(BinaryStringData.fromString(s.toString()).toBytes()); // Flink's encoding, as its result conversion
    }

    private static byte[] ascii(String s) {
        return s.getBytes(StandardCharsets.US_ASCII);
    }

    static void append(StringBuilder out, Object v) {
        if (v == null) {
            out.append("null");
        } else if (v instanceof String) {
            quote(out, (String) v);
        } else if (v instanceof Long || v instanceof Integer || v instanceof Short || v instanceof Byte) {
            out.append(((Number) v).longValue());
        } else if (v instanceof Boolean) {
            out.append(((Boolean) v).booleanValue() ? "true" : "false");
        } else if (v instanceof Double) {
            number(out, (Double) v);
        } else if (v instanceof LocalDateTime) {
            quote(out, ((LocalDateTime) v).format(DateTimeFormatter.ISO_LOCAL_DATE_TIME));
        } else {
            out.append(viaJackson(v));
        }
    }

    private static void number(StringBuilder out, double d) {
        if (Double.isNaN(d)) {
            out.append("\"NaN\"");
        } else if (Double.isInfinite(d)) {
            out.append(d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        } else {
            String s = Double.toString(d);
            if (s.indexOf('E') >= 0) {
                out.append(BigDecimal.valueOf(d).toString());
            } else if (d == 0.0) {
                // JSON_ARRAY writes both zeros as 0.0 (BigDecimal has no negative zero); the online state keeps
                // the value as it is (a latest/first/last of -0.0 is -0.0, as offline)
                out.append(Double.doubleToRawLongBits(d) < 0 ? "-0.0" : "0.0");
            } else {
                out.append(s); // plain notation (1e-3 <= |d| < 1e7): BigDecimal writes it back unchanged
            }
        }
    }

    private static void quote(StringBuilder out, String s) {
        out.append('"');
        int n = s.length();
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            if (c >= 0x20 && c != '"' && c != '\\') {
                out.append(c);
                continue;
            }
            out.append('\\');
            switch (c) {
                case '"': out.append('"'); break;
                case '\\': out.append('\\'); break;
                case '\b': out.append('b'); break;
                case '\t': out.append('t'); break;
                case '\n': out.append('n'); break;
                case '\f': out.append('f'); break;
                case '\r': out.append('r'); break;
                default:
                    out.append("u00").append(HEX[c >> 4]).append(HEX[c & 0xF]);
            }
        }
        out.append('"');
    }

    /** A value of another type: the node JSON_ARRAY's generated code makes of it, serialised as it does. */
    private static String viaJackson(Object v) {
        JsonNodeFactory f = SqlJsonUtils.getNodeFactory();
        JsonNode node;
        if (v instanceof BigDecimal) {
            node = f.numberNode((BigDecimal) v);
        } else if (v instanceof Float) {
            node = f.numberNode((Float) v);
        } else if (v instanceof byte[]) {
            node = f.binaryNode((byte[]) v);
        } else {
            throw new IllegalArgumentException("featurestore: fs_json_array got a value of an unsupported type: "
                    + v.getClass().getName());
        }
        ArrayNode a = f.arrayNode();
        a.add(node);
        String text = SqlJsonUtils.serializeJson(a);
        return text.substring(1, text.length() - 1);
    }
}
