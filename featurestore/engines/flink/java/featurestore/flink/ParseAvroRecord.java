package featurestore.flink;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Iterator;
import java.util.List;

import org.apache.avro.Schema;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * The streaming job's reader of one Kafka record of an Avro stream face: one Avro datum in the binary
 * encoding, written with the source's writer schema (featurestore/model/avro.py), optionally behind
 * Confluent's wire-format header. It returns the same row shape as {@link ParseJsonRecord}, so everything
 * after the parse is shared (featurestore/engines/flink/ingest.py owns every text it returns).
 *
 * <p>{@code eval(value, spec)} returns an {@code ARRAY<STRING>}: [1] the payload (the record's bytes in
 * base64; null for a null value), [2] the record's reason (null value, no Confluent header, another schema
 * id, not a datum of the writer schema, trailing bytes), [3] the event time's reason (null), [4] the first
 * column's reason (a string that is not valid UTF-8), [5] the wall clock when the record was read (epoch
 * ms), [6..] each column's value as canonical text (null for an Avro null or a float NaN), in the order of
 * {@code spec.columns}.
 *
 * <p>The Avro library parses the writer schema; the datum is walked here, over the byte array with every
 * length checked against the bytes left, so a corrupt record can neither allocate a huge buffer nor loop:
 * varints at most 10 bytes (5 for an int), booleans 0 or 1, union and enum indexes in range, string and
 * bytes lengths and block counts within the record, and the datum must end exactly at the record's end.
 */
public class ParseAvroRecord extends ScalarFunction {
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private transient String specText;
    private transient Spec spec;

    @Override
    public boolean isDeterministic() {
        return false; // the result carries the wall clock
    }

    public @DataTypeHint("ARRAY<STRING>") String[] eval(byte[] value, String specText) {
        Spec s = spec(specText);
        String[] out = new String[5 + s.names.length];
        out[4] = Long.toString(System.currentTimeMillis());
        if (value == null) {
            out[1] = s.emptyRecord;
            return out;
        }
        out[0] = Base64.getEncoder().encodeToString(value);
        int start = 0;
        if (s.confluent) {
            if (value.length < 5 || value[0] != 0) {
                out[1] = s.notConfluent;
                return out;
            }
            int id = ByteBuffer.wrap(value, 1, 4).getInt();
            if (s.schemaId >= 0 && id != s.schemaId) {
                out[1] = s.otherSchemaId.replace("{}", Integer.toString(id));
                return out;
            }
            start = 5;
        }
        Reader r = new Reader(value, start);
        Object[] fields = new Object[s.writer.getFields().size()];
        try {
            int i = 0;
            for (Schema.Field f : s.writer.getFields()) {
                fields[i] = r.read(f.schema(), s.wanted[i]);
                i++;
            }
        } catch (Bad e) {
            out[1] = s.notAvro;
            return out;
        }
        if (r.pos != value.length) {
            out[1] = s.trailingData;
            return out;
        }
        for (int c = 0; c < s.names.length; c++) {
            Object v = fields[s.field[c]];
            if (v == null) {
                if (c == s.time) {
                    out[2] = s.missingTime;
                }
                continue;
            }
            if (v instanceof Bad) {
                if (out[3] == null) {
                    out[3] = s.columnReasons[c];
                }
                continue;
            }
            if (c == s.time) {
                out[5 + c] = Long.toString(Math.floorDiv((Long) v, s.timeDivisor));
            } else if (v instanceof Float && s.widen[c]) {
                float f = (Float) v; // a float field of a float64 column: widened exactly, as Avro promotes
                out[5 + c] = Float.isNaN(f) ? null : Double.toString((double) f);
            } else {
                out[5 + c] = text(v);
            }
        }
        return out;
    }

    /** Canonical text of a decoded value (what ParseJsonRecord returns for the same value), null for NaN. */
    private static String text(Object v) {
        if (v instanceof Float) {
            float f = (Float) v;
            return Float.isNaN(f) ? null : Float.toString(f);
        }
        if (v instanceof Double) {
            double d = (Double) v;
            return Double.isNaN(d) ? null : Double.toString(d);
        }
        return v.toString(); // Integer, Long, Boolean, String
    }

    /** A record that is not a datum of the writer schema (also a marker value for a column's bad string). */
    private static final class Bad extends Exception {
        Bad() {
            super(null, null, false, false);
        }
    }

    private static final Bad BAD = new Bad();

    /** Avro binary decoding over one byte array; values are kept only where {@code keep} is true. */
    private static final class Reader {
        final byte[] b;
        int pos;

        Reader(byte[] b, int pos) {
            this.b = b;
            this.pos = pos;
        }

        long varint(int maxBytes) throws Bad {
            long n = 0;
            for (int shift = 0, i = 0; i < maxBytes; i++, shift += 7) {
                if (pos >= b.length) {
                    throw BAD;
                }
                int x = b[pos++] & 0xff;
                n |= (long) (x & 0x7f) << shift;
                if ((x & 0x80) == 0) {
                    if (i == maxBytes - 1 && (x >>> (maxBytes == 10 ? 1 : 4)) != 0) {
                        throw BAD; // bits beyond 64 (or 32) of the zig-zag value
                    }
                    return (n >>> 1) ^ -(n & 1);
                }
            }
            throw BAD;
        }

        long length() throws Bad {
            long n = varint(10);
            if (n < 0 || n > b.length - pos) {
                throw BAD;
            }
            return n;
        }

        /** Skips a length-prefixed value (bytes, a map key). Not {@code pos += length()}: Java reads the left
         * {@code pos} before the call moves it. */
        void skip() throws Bad {
            int n = (int) length();
            pos += n;
        }

        void need(int n) throws Bad {
            if (b.length - pos < n) {
                throw BAD;
            }
        }

        /** Reads one value of {@code schema}; returns it when {@code keep} (null for Avro null), else null. */
        Object read(Schema schema, boolean keep) throws Bad {
            switch (schema.getType()) {
                case NULL:
                    return null;
                case BOOLEAN: {
                    need(1);
                    int x = b[pos++];
                    if (x != 0 && x != 1) {
                        throw BAD;
                    }
                    return keep ? (Object) (x == 1) : null;
                }
                case INT: {
                    long x = varint(5);
                    if (x < Integer.MIN_VALUE || x > Integer.MAX_VALUE) {
                        throw BAD;
                    }
                    return keep ? (Object) (int) x : null;
                }
                case LONG: {
                    long x = varint(10);
                    return keep ? (Object) x : null;
                }
                case FLOAT: {
                    need(4);
                    int bits = (b[pos] & 0xff) | (b[pos + 1] & 0xff) << 8 | (b[pos + 2] & 0xff) << 16
                            | (b[pos + 3] & 0xff) << 24;
                    pos += 4;
                    return keep ? (Object) Float.intBitsToFloat(bits) : null;
                }
                case DOUBLE: {
                    need(8);
                    long bits = 0;
                    for (int i = 7; i >= 0; i--) {
                        bits = bits << 8 | (b[pos + i] & 0xff);
                    }
                    pos += 8;
                    return keep ? (Object) Double.longBitsToDouble(bits) : null;
                }
                case STRING: {
                    int n = (int) length();
                    int at = pos;
                    pos += n;
                    if (!keep) {
                        return null;
                    }
                    try {
                        return StandardCharsets.UTF_8.newDecoder()
                                .onMalformedInput(CodingErrorAction.REPORT)
                                .onUnmappableCharacter(CodingErrorAction.REPORT)
                                .decode(ByteBuffer.wrap(b, at, n)).toString();
                    } catch (CharacterCodingException e) {
                        return BAD; // the column's reason, not the record's: the datum itself is well-formed
                    }
                }
                case BYTES: {
                    skip();
                    return null;
                }
                case FIXED: {
                    need(schema.getFixedSize());
                    pos += schema.getFixedSize();
                    return null;
                }
                case ENUM: {
                    long i = varint(5);
                    List<String> symbols = schema.getEnumSymbols();
                    if (i < 0 || i >= symbols.size()) {
                        throw BAD;
                    }
                    return keep ? symbols.get((int) i) : null;
                }
                case UNION: {
                    long i = varint(5);
                    List<Schema> branches = schema.getTypes();
                    if (i < 0 || i >= branches.size()) {
                        throw BAD;
                    }
                    return read(branches.get((int) i), keep);
                }
                case RECORD: {
                    for (Schema.Field f : schema.getFields()) {
                        read(f.schema(), false);
                    }
                    return null;
                }
                case ARRAY:
                case MAP: {
                    Schema item = schema.getType() == Schema.Type.ARRAY ? schema.getElementType() : schema.getValueType();
                    while (true) {
                        long count = varint(10);
                        if (count == 0) {
                            return null;
                        }
                        if (count < 0) {
                            count = -count;
                            if (count < 0) {
                                throw BAD;
                            }
                            length(); // the block's size in bytes: decoded item by item anyway
                        }
                        if (count > b.length - pos) {
                            throw BAD; // more items than bytes left (even a null item costs a block count)
                        }
                        for (long k = 0; k < count; k++) {
                            if (schema.getType() == Schema.Type.MAP) {
                                skip(); // the key
                            }
                            read(item, false);
                        }
                    }
                }
                default:
                    throw BAD;
            }
        }
    }

    private Spec spec(String text) {
        if (spec == null || !text.equals(specText)) {
            try {
                spec = new Spec(MAPPER.readTree(text));
            } catch (Exception e) {
                throw new IllegalArgumentException("featurestore: bad ParseAvroRecord spec: " + e.getMessage(), e);
            }
            specText = text;
        }
        return spec;
    }

    /** The writer schema, framing, columns and every reason text, from flink/ingest.py. */
    private static final class Spec {
        final Schema writer;
        final boolean confluent;
        final int schemaId;
        final String[] names;
        final String[] columnReasons;
        final int[] field; // column -> index of its field in the writer record
        final boolean[] wanted; // field index -> read by a column
        final boolean[] widen; // column -> a float64 column (a float field's value is widened)
        final int time;
        final long timeDivisor;
        final String emptyRecord, notConfluent, otherSchemaId, notAvro, trailingData, missingTime;

        Spec(JsonNode node) {
            writer = new Schema.Parser().parse(node.get("writer").asText());
            confluent = node.get("confluent").asBoolean();
            schemaId = node.hasNonNull("schema_id") ? node.get("schema_id").asInt() : -1;
            JsonNode cols = node.get("columns");
            names = new String[cols.size()];
            columnReasons = new String[cols.size()];
            field = new int[cols.size()];
            widen = new boolean[cols.size()];
            wanted = new boolean[writer.getFields().size()];
            int t = -1;
            Iterator<JsonNode> it = cols.elements();
            for (int i = 0; it.hasNext(); i++) {
                JsonNode c = it.next();
                names[i] = c.get(0).asText();
                columnReasons[i] = c.get(2).asText();
                widen[i] = c.get(1).asText().equals("float64");
                Schema.Field f = writer.getField(names[i]);
                if (f == null) {
                    throw new IllegalArgumentException("column '" + names[i] + "' is not in the writer schema");
                }
                field[i] = f.pos();
                wanted[f.pos()] = true;
                if (names[i].equals(node.get("time").asText())) {
                    t = i;
                }
            }
            time = t;
            String unit = node.get("time_unit").asText();
            timeDivisor = unit.equals("ns") ? 1_000_000L : unit.equals("us") ? 1_000L : 1L;
            JsonNode r = node.get("reasons");
            emptyRecord = r.get("empty_record").asText();
            notConfluent = r.get("not_confluent").asText();
            otherSchemaId = r.get("other_schema_id").asText();
            notAvro = r.get("not_avro").asText();
            trailingData = r.get("trailing_data").asText();
            missingTime = r.get("missing_time").asText();
        }
    }
}
