package featurestore.flink;

import java.math.BigDecimal;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ArrayNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.JsonNodeFactory;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.InputGroup;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.table.runtime.functions.SqlJsonUtils;

/**
 * {@code fs_json_array(v1, v2, ...)}: the text Flink's {@code JSON_ARRAY(v1, v2, ... NULL ON NULL)} returns,
 * byte for byte but for one thing (a negative zero DOUBLE is {@code -0.0}, not {@code 0.0}: the value as it is),
 * written directly instead of through a Jackson tree (which Flink builds, converts to Java
 * objects and serialises again for every row: 16% of the streaming job's JVM samples for the online rows).
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
    private static final char[] HEX = "0123456789ABCDEF".toCharArray();

    public String eval(@DataTypeHint(inputGroup = InputGroup.ANY) Object... values) {
        StringBuilder out = new StringBuilder(16 * values.length + 2);
        out.append('[');
        for (int i = 0; i < values.length; i++) {
            if (i > 0) {
                out.append(',');
            }
            append(out, values[i]);
        }
        return out.append(']').toString();
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
