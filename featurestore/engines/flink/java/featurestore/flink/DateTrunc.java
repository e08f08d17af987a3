package featurestore.flink;

import java.time.DayOfWeek;
import java.time.LocalDateTime;
import java.time.temporal.ChronoUnit;
import java.time.temporal.IsoFields;
import java.time.temporal.TemporalAdjusters;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code fs_date_trunc(part, us)}: DuckDB's {@code date_trunc(part, ts)} of a timestamp given as its epoch
 * microseconds, in UTC on the proleptic Gregorian calendar, as epoch microseconds: {@code part} is a canonical name
 * of featurestore/engines/flink/exprs_time.py ({@code TRUNC_PARTS}); a week starts on Monday, an ISO year on the
 * Monday of its week 1, a decade/century/millennium on a year divisible by 10/100/1000. NULL where the result is
 * before year 1 (the decade of years 1 to 9, ...), which the job cannot hold (the row is recorded as failed).
 */
public class DateTrunc extends ScalarFunction {
    public Long eval(String part, Long us) {
        if (part == null || us == null) {
            return null;
        }
        LocalDateTime t = ShiftMicros.time(us);
        LocalDateTime day = t.truncatedTo(ChronoUnit.DAYS);
        int year = t.getYear();
        switch (part) {
            case "microsecond": return us;
            case "millisecond": return Math.floorDiv(us, 1000L) * 1000L;
            case "second": return Math.floorDiv(us, 1_000_000L) * 1_000_000L;
            case "minute": return ShiftMicros.micros(t.truncatedTo(ChronoUnit.MINUTES));
            case "hour": return ShiftMicros.micros(t.truncatedTo(ChronoUnit.HOURS));
            case "day": return ShiftMicros.micros(day);
            case "week": return ShiftMicros.micros(day.with(TemporalAdjusters.previousOrSame(DayOfWeek.MONDAY)));
            case "isoyear":
                return ShiftMicros.micros(day.with(IsoFields.WEEK_OF_WEEK_BASED_YEAR, 1)
                        .with(TemporalAdjusters.previousOrSame(DayOfWeek.MONDAY)));
            case "month": return ShiftMicros.micros(day.withDayOfMonth(1));
            case "quarter": return ShiftMicros.micros(day.withDayOfMonth(1).withMonth((t.getMonthValue() - 1) / 3 * 3 + 1));
            case "year": return ShiftMicros.micros(day.withDayOfYear(1));
            case "decade": return yearStart(year / 10 * 10);
            case "century": return yearStart(year / 100 * 100);
            case "millennium": return yearStart(year / 1000 * 1000);
            default: throw new IllegalArgumentException("fs_date_trunc: unknown part " + part);
        }
    }

    private static Long yearStart(int year) {
        return year < 1 ? null : ShiftMicros.micros(LocalDateTime.of(year, 1, 1, 0, 0));
    }
}
