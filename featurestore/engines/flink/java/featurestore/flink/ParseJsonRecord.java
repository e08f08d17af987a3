package featurestore.flink;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.DateTimeException;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.ArrayData;

/**
 * The streaming job's reader of one Kafka record: a strict JSON object with typed columns, in one pass
 * (featurestore/engines/flink/ingest.py compiles the SQL around it and owns every text it returns).
 *
 * <p>{@code eval(value, spec)} returns {@link RecordFunction}'s row: the payload as text (invalid UTF-8 as
 * U+FFFD; null for a null value), the record's reason (null value, not UTF-8, not a JSON object, trailing
 * data, a duplicate key), the event time's reason (missing, not an integer), the first column's reason, the
 * wall clock, and each column's canonical text (null for JSON null or a missing key).
 *
 * <p>Strict means: RFC 8259 JSON (no comments, NaN/Infinity tokens, leading zeros, single quotes or
 * trailing commas), valid UTF-8, one object and nothing but whitespace after it, no key twice in any
 * object. Types: a string column takes a JSON string; int32/int64 an integer literal within the type;
 * float32/float64 a number that is finite in the type (1e400 is not a float64); bool true/false; json an
 * object or an array (its compact text: Jackson's, whose numbers may be spelt unlike DuckDB's or Python's, the
 * same values) or a string holding JSON text (kept as written, like the batch face's and push's); a timestamp
 * other than the event time an integer of epoch milliseconds (the event time's unit) or an ISO-8601 string
 * {@code YYYY-MM-DD(T| )hh:mm:ss[.f{1,9}][Z|(+|-)hh[:]mm]} (no offset: UTC; digits beyond the microsecond
 * floored), read as epoch microseconds within years 1 to 9999 UTC.
 */
public class ParseJsonRecord extends RecordFunction<ParseJsonRecord.Spec> {
    private static final JsonFactory FACTORY = new JsonFactory();

    public @DataTypeHint(value = "ARRAY<STRING>", bridgedTo = ArrayData.class) ArrayData eval(byte[] value,
                                                                                         String specText) {
        Spec s = spec(specText, Spec::new);
        String[] out = row(s, value);
        if (value == null) {
            return array(out, null);
        }
        String text;
        try {
            CharsetDecoder strict = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT);
            text = strict.decode(ByteBuffer.wrap(value)).toString();
        } catch (CharacterCodingException e) {
            out[PAYLOAD] = new String(value, StandardCharsets.UTF_8);
            return array(reject(out, s.notUtf8), null);
        }
        return array(parse(s, text, out), value); // the payload is its own UTF-8: no copy through a String
    }

    /** {@code out} with the outcome of the JSON {@code text}. */
    private static String[] parse(Spec s, String text, String[] out) {
        JsonToken[] tokens = new JsonToken[s.names.length];
        String[] texts = new String[s.names.length];
        JsonParser.NumberType[] numberTypes = new JsonParser.NumberType[s.names.length];
        try (JsonParser p = FACTORY.createParser(text)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return reject(out, s.notObject);
            }
            Set<String> seen = new HashSet<>();
            JsonToken t;
            while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                String name = p.getCurrentName();
                if (!seen.add(name)) {
                    return reject(out, s.duplicateKey.replace("{}", name));
                }
                JsonToken v = p.nextToken();
                Integer i = s.index.get(name);
                if (v == JsonToken.START_OBJECT || v == JsonToken.START_ARRAY) {
                    long start = p.getTokenLocation().getCharOffset();
                    String dup = skipNested(p, v);
                    if (dup != null) {
                        return reject(out, s.duplicateKey.replace("{}", dup));
                    }
                    if (i != null && s.types[i].equals("json")) { // the nested value's text, made compact below
                        texts[i] = text.substring((int) start, (int) p.getCurrentLocation().getCharOffset());
                    }
                } else if (i != null) {
                    texts[i] = p.getText();
                    if (v == JsonToken.VALUE_NUMBER_INT) {
                        numberTypes[i] = p.getNumberType();
                    }
                }
                if (i != null) {
                    tokens[i] = v;
                }
            }
            if (t != JsonToken.END_OBJECT) {
                return reject(out, s.notObject);
            }
            JsonToken after;
            try {
                after = p.nextToken();
            } catch (IOException e) {
                after = JsonToken.NOT_AVAILABLE;
            }
            if (after != null) {
                return reject(out, s.trailingData);
            }
        } catch (IOException | RuntimeException e) {
            return reject(out, s.notObject);
        }
        for (int i = 0; i < s.names.length; i++) {
            JsonToken tok = tokens[i];
            boolean isNull = tok == null || tok == JsonToken.VALUE_NULL;
            String v = isNull ? null : typed(s, s.types[i], tok, texts[i], numberTypes[i]);
            put(out, s, i, v, !isNull, s.timeNotInteger);
        }
        return out;
    }

    /** The canonical text of a value of {@code type}, or null when the JSON value is not of that type. */
    private static String typed(Spec s, String type, JsonToken tok, String text, JsonParser.NumberType nt) {
        switch (type) {
            case "json": // a JSON value: an object or array (compact text), or a string holding JSON text (kept)
                try {
                    if (tok == JsonToken.START_OBJECT || tok == JsonToken.START_ARRAY) {
                        return MAPPER.writeValueAsString(MAPPER.readTree(text));
                    }
                    if (tok == JsonToken.VALUE_STRING) {
                        try (JsonParser q = FACTORY.createParser(text)) { // must be one JSON value, nothing after
                            if (q.nextToken() == null) {
                                return null;
                            }
                            q.skipChildren();
                            return q.nextToken() == null ? text : null;
                        }
                    }
                } catch (IOException | RuntimeException e) {
                    return null;
                }
                return null;
            case "string":
                return tok == JsonToken.VALUE_STRING ? text : null;
            case "bool":
                return tok == JsonToken.VALUE_TRUE ? "true" : tok == JsonToken.VALUE_FALSE ? "false" : null;
            case "timestamp": // a timestamp value other than the event time: epoch microseconds
                if (tok == JsonToken.VALUE_STRING) {
                    Long us = isoMicros(text);
                    return us == null ? null : timeValue(s, us);
                }
                if (tok != JsonToken.VALUE_NUMBER_INT
                        || (nt != JsonParser.NumberType.INT && nt != JsonParser.NumberType.LONG)) {
                    return null;
                }
                try {
                    return timeValue(s, Math.multiplyExact(Long.parseLong(text), 1000L));
                } catch (ArithmeticException e) {
                    return null;
                }
            case "int32":
            case "int64":
            case "event_time": // epoch milliseconds, an int64
                if (tok != JsonToken.VALUE_NUMBER_INT
                        || (nt != JsonParser.NumberType.INT && nt != JsonParser.NumberType.LONG)) {
                    return null;
                }
                long x = Long.parseLong(text);
                if (type.equals("int32") && (x < Integer.MIN_VALUE || x > Integer.MAX_VALUE)) {
                    return null;
                }
                return Long.toString(x);
            case "float32":
            case "float64":
                if (tok != JsonToken.VALUE_NUMBER_INT && tok != JsonToken.VALUE_NUMBER_FLOAT) {
                    return null;
                }
                if (type.equals("float32")) {
                    float f = Float.parseFloat(text);
                    return Float.isFinite(f) ? Float.toString(f) : null;
                }
                double d = Double.parseDouble(text);
                return Double.isFinite(d) ? Double.toString(d) : null;
            default:
                return null;
        }
    }

    private static final Pattern ISO = Pattern.compile(
            "(\\d{4})-(\\d{2})-(\\d{2})[T ](\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d{1,9}))?(Z|z|[+-]\\d{2}:?\\d{2})?");

    /** Epoch microseconds (floored) of an ISO-8601 date-time text, or null when it is not one. */
    static Long isoMicros(String text) {
        Matcher m = ISO.matcher(text);
        if (!m.matches()) {
            return null;
        }
        try {
            LocalDateTime t = LocalDateTime.of(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)),
                    Integer.parseInt(m.group(3)), Integer.parseInt(m.group(4)), Integer.parseInt(m.group(5)),
                    Integer.parseInt(m.group(6)));
            String frac = m.group(7) == null ? "" : m.group(7);
            long micros = frac.isEmpty() ? 0 : Long.parseLong((frac + "00000").substring(0, 6));
            int offsetSeconds = 0;
            String z = m.group(8);
            if (z != null && !z.equalsIgnoreCase("Z")) {
                String digits = z.substring(1).replace(":", "");
                int hh = Integer.parseInt(digits.substring(0, 2)), mm = Integer.parseInt(digits.substring(2));
                if (hh > 18 || mm > 59) {
                    return null;
                }
                offsetSeconds = (z.charAt(0) == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
            }
            long seconds = t.toEpochSecond(ZoneOffset.UTC) - offsetSeconds;
            return Math.addExact(Math.multiplyExact(seconds, 1_000_000L), micros);
        } catch (DateTimeException | ArithmeticException e) {
            return null;
        }
    }

    /** Skips a nested object or array (the parser is on its start token); returns a key that appears twice
     * in one of its objects, else null. */
    private static String skipNested(JsonParser p, JsonToken start) throws IOException {
        Deque<Set<String>> keys = new ArrayDeque<>();
        keys.push(start == JsonToken.START_OBJECT ? new HashSet<>() : java.util.Collections.emptySet());
        while (!keys.isEmpty()) {
            JsonToken t = p.nextToken();
            if (t == null) {
                throw new IOException("unexpected end of input");
            }
            switch (t) {
                case START_OBJECT:
                    keys.push(new HashSet<>());
                    break;
                case START_ARRAY:
                    keys.push(java.util.Collections.emptySet());
                    break;
                case END_OBJECT:
                case END_ARRAY:
                    keys.pop();
                    break;
                case FIELD_NAME:
                    if (!keys.peek().add(p.getCurrentName())) {
                        return p.getCurrentName();
                    }
                    break;
                default:
                    break;
            }
        }
        return null;
    }

    /** The JSON reasons beyond the shared ones; the event time's column reads as epoch milliseconds. */
    static final class Spec extends RecordFunction.Columns {
        final Map<String, Integer> index = new HashMap<>();
        final String notUtf8, notObject, duplicateKey, timeNotInteger;

        Spec(JsonNode node) {
            super(node);
            for (int i = 0; i < names.length; i++) {
                index.put(names[i], i);
            }
            if (time >= 0) {
                types[time] = "event_time";
            }
            JsonNode r = node.get("reasons");
            notUtf8 = r.get("not_utf8").asText();
            notObject = r.get("not_object").asText();
            duplicateKey = r.get("duplicate_key").asText();
            timeNotInteger = r.get("time_not_integer").asText();
        }
    }
}
