package featurestore.flink;

import java.time.LocalDateTime;
import java.time.ZoneOffset;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code fs_epoch_us(t)}: a TIMESTAMP (UTC) as its epoch microseconds (BIGINT), floored: how the online
 * store holds a timestamp value and orders events by it (featurestore/stores/online_format.py). The streaming
 * job's online rows carry timestamp-typed values with it (featurestore/engines/flink/tables.py).
 */
public class EpochMicros extends ScalarFunction {
    public Long eval(@DataTypeHint("TIMESTAMP(6)") LocalDateTime t) {
        if (t == null) {
            return null;
        }
        return Math.addExact(Math.multiplyExact(t.toEpochSecond(ZoneOffset.UTC), 1_000_000L),
                (long) (t.getNano() / 1000));
    }
}
