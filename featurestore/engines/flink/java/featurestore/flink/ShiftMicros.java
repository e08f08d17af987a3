package featurestore.flink;

import java.time.DateTimeException;
import java.time.LocalDateTime;
import java.time.ZoneOffset;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code fs_shift_us(us, months, days, micros, sign)}: DuckDB's {@code ts + INTERVAL ...} ({@code sign} 1) or
 * {@code ts - INTERVAL ...} ({@code sign} -1) of a timestamp given as its epoch microseconds, in UTC on the
 * proleptic Gregorian calendar, in DuckDB's order: adding, the months first (a day past the new month's end is its
 * last day: Jan 31 + 1 month is Feb 28/29), then the days, then the microseconds; subtracting, the microseconds
 * first, then the months, then the days. NULL where the result is outside years 1 to 9999, which the job cannot
 * hold (featurestore/engines/flink/exprs_time.py records the row as failed).
 */
public class ShiftMicros extends ScalarFunction {
    static final long MIN_US = -62_135_596_800_000_000L;  // 0001-01-01T00:00:00Z
    static final long MAX_US = 253_402_300_799_999_999L;  // 9999-12-31T23:59:59.999999Z

    public Long eval(Long us, Integer months, Integer days, Long micros, Integer sign) {
        if (us == null || months == null || days == null || micros == null || sign == null) {
            return null;
        }
        try {
            if (sign > 0) {
                return inRange(Math.addExact(micros(time(us).plusMonths(months).plusDays(days)), micros));
            }
            return inRange(micros(time(Math.subtractExact(us, micros)).minusMonths(months).minusDays(days)));
        } catch (DateTimeException | ArithmeticException outside) {
            return null;
        }
    }

    static LocalDateTime time(long us) {
        return LocalDateTime.ofEpochSecond(Math.floorDiv(us, 1_000_000L), (int) Math.floorMod(us, 1_000_000L) * 1000,
                ZoneOffset.UTC);
    }

    static long micros(LocalDateTime t) {
        return Math.addExact(Math.multiplyExact(t.toEpochSecond(ZoneOffset.UTC), 1_000_000L), t.getNano() / 1000);
    }

    static Long inRange(long us) {
        return us < MIN_US || us > MAX_US ? null : us;
    }
}
