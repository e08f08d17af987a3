package featurestore.flink;

import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.temporal.IsoFields;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code fs_date_part(part, us)}: DuckDB's {@code date_part(part, ts)} of a timestamp given as its epoch
 * microseconds (BIGINT), in UTC on the proleptic Gregorian calendar (java.time's ISO calendar, DuckDB's):
 * {@code part} is a canonical name of featurestore/engines/flink/exprs_funcs.py ({@code PART_NAMES}). The
 * streaming job passes {@code fs_epoch_us} of its TIMESTAMP, the Flink backfill its epoch microseconds; timestamps
 * are of years 1 to 9999 (docs/semantics.md), where DuckDB's decade, century and millennium are these.
 */
public class DatePart extends ScalarFunction {
    public Long eval(String part, Long us) {
        if (part == null || us == null) {
            return null;
        }
        LocalDateTime t = LocalDateTime.ofEpochSecond(Math.floorDiv(us, 1_000_000L),
                (int) Math.floorMod(us, 1_000_000L) * 1000, ZoneOffset.UTC);
        long micros = t.getNano() / 1000;
        switch (part) {
            case "year": return (long) t.getYear();
            case "quarter": return (long) ((t.getMonthValue() - 1) / 3 + 1);
            case "month": return (long) t.getMonthValue();
            case "day": return (long) t.getDayOfMonth();
            case "dayofyear": return (long) t.getDayOfYear();
            case "hour": return (long) t.getHour();
            case "minute": return (long) t.getMinute();
            case "second": return (long) t.getSecond();
            case "millisecond": return t.getSecond() * 1000L + micros / 1000;
            case "microsecond": return t.getSecond() * 1_000_000L + micros;
            case "dayofweek": return (long) (t.getDayOfWeek().getValue() % 7);  // Sunday = 0
            case "isodow": return (long) t.getDayOfWeek().getValue();  // Monday = 1
            case "week": return (long) t.get(IsoFields.WEEK_OF_WEEK_BASED_YEAR);
            case "isoyear": return (long) t.get(IsoFields.WEEK_BASED_YEAR);
            case "yearweek":
                return t.get(IsoFields.WEEK_BASED_YEAR) * 100L + t.get(IsoFields.WEEK_OF_WEEK_BASED_YEAR);
            case "decade": return (long) (t.getYear() / 10);
            case "century": return (long) ((t.getYear() - 1) / 100 + 1);
            case "millennium": return (long) ((t.getYear() - 1) / 1000 + 1);
            case "era": return 1L;
            default: throw new IllegalArgumentException("fs_date_part: unknown part " + part);
        }
    }
}
