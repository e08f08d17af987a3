package featurestore.flink;

import java.time.LocalDateTime;
import java.time.ZoneOffset;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code fs_timestamp_us(us)}: epoch microseconds (BIGINT) as a TIMESTAMP(6) in UTC, exactly. The streaming
 * job's typed view makes a timestamp column other than the event time with it from the parse functions'
 * canonical text (featurestore/engines/flink/ingest.py); {@link EpochMicros} is its inverse.
 */
public class MicrosTimestamp extends ScalarFunction {
    public @DataTypeHint("TIMESTAMP(6)") LocalDateTime eval(Long us) {
        if (us == null) {
            return null;
        }
        return LocalDateTime.ofEpochSecond(Math.floorDiv(us, 1_000_000L),
                (int) Math.floorMod(us, 1_000_000L) * 1000, ZoneOffset.UTC);
    }
}
