package featurestore.flink;

import java.io.IOException;
import java.util.Iterator;
import java.util.function.Function;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.table.data.ArrayData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.binary.BinaryArrayData;
import org.apache.flink.table.data.writer.BinaryArrayWriter;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * What {@link ParseJsonRecord} and {@link ParseAvroRecord} share: the row they return, their spec's columns
 * and common reasons (from featurestore/engines/flink/ingest.py, which owns every text), and how a decoded
 * column value becomes a value or a reason. The event time's range and future checks are not here: both
 * jobs share them in SQL (featurestore/semantics.py).
 *
 * <p>The row is an {@code ARRAY<STRING>}: [PAYLOAD] the payload, [RECORD] the record's reason, [TIME] the
 * event time's reason, [COLUMN] the first column's reason (a value not of its type), [READ_AT] the wall
 * clock when the record was read (epoch ms), [FIRST_VALUE..] each column's value as canonical text (null
 * for a null or missing value), in the order of the spec's columns. The canonical text of a timestamp column
 * other than the event time is its epoch microseconds (an integer; {@link MicrosTimestamp} makes it a
 * TIMESTAMP(6)), inside the spec's {@code time_value_range} (featurestore.semantics: years 1 to 9999 UTC).
 */
abstract class RecordFunction<S extends RecordFunction.Columns> extends ScalarFunction {
    static final int PAYLOAD = 0, RECORD = 1, TIME = 2, COLUMN = 3, READ_AT = 4, FIRST_VALUE = 5;
    static final ObjectMapper MAPPER = new ObjectMapper();

    private transient String specText;
    private transient S spec;

    @Override
    public boolean isDeterministic() {
        return false; // the result carries the wall clock
    }

    /** The spec of {@code text} (parsed once per distinct text). */
    final S spec(String text, Function<JsonNode, S> parse) {
        if (spec == null || !text.equals(specText)) {
            try {
                spec = parse.apply(MAPPER.readTree(text));
            } catch (IOException | RuntimeException e) {
                throw new IllegalArgumentException(
                        "featurestore: bad " + getClass().getSimpleName() + " spec: " + e.getMessage(), e);
            }
            specText = text;
        }
        return spec;
    }

    /** A new row read now; a null record value already has its reason. */
    static String[] row(Columns s, byte[] value) {
        String[] out = new String[FIRST_VALUE + s.names.length];
        out[READ_AT] = Long.toString(System.currentTimeMillis());
        if (value == null) {
            out[RECORD] = s.emptyRecord;
        }
        return out;
    }

    /** {@code row} as Flink's internal array, written as the planner writes a String[] (a binary array, which
     * the Calcs copy whole; a generic one they copy string by string); {@code payload}, when not null, the
     * payload's UTF-8 (written as it is: its text is not in the row). */
    static ArrayData array(String[] row, byte[] payload) {
        BinaryArrayData out = new BinaryArrayData();
        BinaryArrayWriter writer = new BinaryArrayWriter(out, row.length, 8);
        for (int i = 0; i < row.length; i++) {
            if (i == PAYLOAD && payload != null) {
                writer.writeString(i, StringData.fromBytes(payload));
            } else if (row[i] == null) {
                writer.setNullAt(i);
            } else {
                writer.writeString(i, StringData.fromString(row[i]));
            }
        }
        writer.complete();
        return out;
    }

    /** The row of a record that is not one (its reason; no values). */
    static String[] reject(String[] out, String reason) {
        out[RECORD] = reason;
        return out;
    }

    /** Column {@code c}'s outcome: {@code text} its canonical value; null with {@code bad} false a null or
     * missing value (a missing event time); null with {@code bad} true a value not of the column's type (the
     * event time's {@code timeReason}, or the first such column's reason). */
    static void put(String[] out, Columns s, int c, String text, boolean bad, String timeReason) {
        if (text != null) {
            out[FIRST_VALUE + c] = text;
        } else if (c == s.time) {
            out[TIME] = bad ? timeReason : s.missingTime;
        } else if (bad && out[COLUMN] == null) {
            out[COLUMN] = s.columnReasons[c];
        }
    }

    /** The canonical text of a timestamp value of epoch microseconds {@code us}, or null outside the spec's
     * range of timestamp values. */
    static String timeValue(Columns s, long us) {
        return us >= s.minTimeValueUs && us < s.maxTimeValueUs ? Long.toString(us) : null;
    }

    /** The columns (name, type, the reason of a value not of its type), which is the event time, and the
     * reasons every format has. */
    static class Columns {
        final String[] names;
        final String[] types;
        final String[] columnReasons;
        final int time;
        final String emptyRecord, trailingData, missingTime;
        final long minTimeValueUs, maxTimeValueUs; // the range of a timestamp value (not the event time)

        Columns(JsonNode node) {
            JsonNode cols = node.get("columns");
            names = new String[cols.size()];
            types = new String[cols.size()];
            columnReasons = new String[cols.size()];
            int t = -1;
            Iterator<JsonNode> it = cols.elements();
            for (int i = 0; it.hasNext(); i++) {
                JsonNode c = it.next();
                names[i] = c.get(0).asText();
                types[i] = c.get(1).asText();
                columnReasons[i] = c.get(2).asText();
                if (names[i].equals(node.get("time").asText())) {
                    t = i;
                }
            }
            time = t;
            JsonNode range = node.get("time_value_range");
            minTimeValueUs = range == null ? Long.MIN_VALUE : range.get(0).asLong();
            maxTimeValueUs = range == null ? Long.MAX_VALUE : range.get(1).asLong();
            JsonNode r = node.get("reasons");
            emptyRecord = r.get("empty_record").asText();
            trailingData = r.get("trailing_data").asText();
            missingTime = r.get("missing_time").asText();
        }
    }
}
