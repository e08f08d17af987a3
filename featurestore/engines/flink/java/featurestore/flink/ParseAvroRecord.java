package featurestore.flink;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;

import org.apache.avro.Schema;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.table.annotation.DataTypeHint;

/**
 * The streaming job's reader of one Kafka record of an Avro stream face: one Avro datum in the binary
 * encoding, written with the source's writer schema (featurestore/model/avro.py), optionally behind
 * Confluent's wire-format header. It returns the same row shape as {@link ParseJsonRecord}, so everything
 * after the parse is shared (featurestore/engines/flink/ingest.py owns every text it returns).
 *
 * <p>{@code eval(value, spec)} returns {@link RecordFunction}'s row: the payload (the record's bytes in
 * base64; null for a null value), the record's reason (null value, no Confluent header, another schema id,
 * not a datum of the writer schema, trailing bytes), the event time's reason (null), the first column's
 * reason (a string that is not valid UTF-8, a timestamp outside years 1 to 9999), the wall clock, and each
 * column's canonical text (null for an Avro null or a float NaN; a timestamp column other than the event time:
 * its long in the spec's {@code value_units} as epoch microseconds).
 *
 * <p>The Avro library parses the writer schema; the datum is walked here, over the byte array with every
 * length checked against the bytes left, so a corrupt record can neither allocate a huge buffer nor loop:
 * varints at most 10 bytes (5 for an int), booleans 0 or 1, union and enum indexes in range, string and
 * bytes lengths and block counts within the record, and the datum must end exactly at the record's end.
 */
public class ParseAvroRecord extends RecordFunction<ParseAvroRecord.Spec> {

    public @DataTypeHint("ARRAY<STRING>") String[] eval(byte[] value, String specText) {
        Spec s = spec(specText, Spec::new);
        String[] out = row(s, value);
        if (value == null) {
            return out;
        }
        out[PAYLOAD] = Base64.getEncoder().encodeToString(value);
        int start = 0;
        if (s.confluent) {
            if (value.length < 5 || value[0] != 0) {
                return reject(out, s.notConfluent);
            }
            int id = ByteBuffer.wrap(value, 1, 4).getInt();
            if (s.schemaId >= 0 && id != s.schemaId) {
                return reject(out, s.otherSchemaId.replace("{}", Integer.toString(id)));
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
            return reject(out, s.notAvro);
        }
        if (r.pos != value.length) {
            return reject(out, s.trailingData);
        }
        for (int c = 0; c < s.names.length; c++) {
            Object v = fields[s.field[c]];
            String text;
            if (v == null || v instanceof Bad) {
                text = null;
            } else if (c == s.time) {
                text = Long.toString(Math.floorDiv((Long) v, s.timeDivisor));
            } else if (s.valueUnit[c] != null) { // a timestamp value: epoch microseconds, in range
                text = micros((Long) v, s.valueUnit[c]);
                if (text == null) {
                    v = BAD;
                } else {
                    text = timeValue(s, Long.parseLong(text));
                    v = text == null ? BAD : v;
                }
            } else if (v instanceof Float && s.widen[c]) {
                float f = (Float) v; // a float field of a float64 column: widened exactly, as Avro promotes
                text = Float.isNaN(f) ? null : Double.toString((double) f);
            } else {
                text = text(v);
            }
            put(out, s, c, text, v instanceof Bad, s.columnReasons[c]);
        }
        return out;
    }

    /** Epoch microseconds (as text) of a long in {@code unit} ("ms", "us", "ns": floored), null on overflow. */
    private static String micros(long x, String unit) {
        try {
            return Long.toString(unit.equals("ms") ? Math.multiplyExact(x, 1000L)
                    : unit.equals("ns") ? Math.floorDiv(x, 1000L) : x);
        } catch (ArithmeticException e) {
            return null;
        }
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

    /** The writer schema, framing, where each column's field is and the Avro reasons, beyond the shared ones. */
    static final class Spec extends RecordFunction.Columns {
        final Schema writer;
        final boolean confluent;
        final int schemaId;
        final int[] field; // column -> index of its field in the writer record
        final boolean[] wanted; // field index -> read by a column
        final boolean[] widen; // column -> a float64 column (a float field's value is widened)
        final String[] valueUnit; // column -> the unit of a timestamp column's long (not the event time), else null
        final long timeDivisor;
        final String notConfluent, otherSchemaId, notAvro;

        Spec(JsonNode node) {
            super(node);
            writer = new Schema.Parser().parse(node.get("writer").asText());
            confluent = node.get("confluent").asBoolean();
            schemaId = node.hasNonNull("schema_id") ? node.get("schema_id").asInt() : -1;
            field = new int[names.length];
            widen = new boolean[names.length];
            valueUnit = new String[names.length];
            JsonNode units = node.get("value_units");
            wanted = new boolean[writer.getFields().size()];
            for (int i = 0; i < names.length; i++) {
                widen[i] = types[i].equals("float64");
                if (i != time && units != null && units.hasNonNull(names[i])) {
                    valueUnit[i] = units.get(names[i]).asText();
                }
                Schema.Field f = writer.getField(names[i]);
                if (f == null) {
                    throw new IllegalArgumentException("column '" + names[i] + "' is not in the writer schema");
                }
                field[i] = f.pos();
                wanted[f.pos()] = true;
            }
            String unit = node.get("time_unit").asText();
            timeDivisor = unit.equals("ns") ? 1_000_000L : unit.equals("us") ? 1_000L : 1L;
            JsonNode r = node.get("reasons");
            notConfluent = r.get("not_confluent").asText();
            otherSchemaId = r.get("other_schema_id").asText();
            notAvro = r.get("not_avro").asText();
        }
    }
}
