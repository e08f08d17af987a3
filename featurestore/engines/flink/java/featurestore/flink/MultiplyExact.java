package featurestore.flink;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code fs_multiply_exact(a, b)}: {@code a * b} of two INTs or two BIGINTs, NULL where it overflows the type
 * (Java's {@code *} would wrap; DuckDB fails the query): integer arithmetic in both Flink jobs, where the
 * Flink backfill then fails like DuckDB's backfill (featurestore/engines/flink/exprs.py).
 */
public class MultiplyExact extends ScalarFunction {
    public Integer eval(Integer a, Integer b) {
        if (a == null || b == null) {
            return null;
        }
        try {
            return Math.multiplyExact(a.intValue(), b.intValue());
        } catch (ArithmeticException overflow) {
            return null;
        }
    }

    public Long eval(Long a, Long b) {
        if (a == null || b == null) {
            return null;
        }
        try {
            return Math.multiplyExact(a.longValue(), b.longValue());
        } catch (ArithmeticException overflow) {
            return null;
        }
    }
}
