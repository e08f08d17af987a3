package featurestore.flink;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * Integer arithmetic of two INTs or two BIGINTs that is NULL where it overflows the type (Java's operators
 * would wrap; DuckDB fails the query): {@link AddExact}, {@link SubtractExact}, {@link MultiplyExact}, used by
 * both Flink jobs, where the Flink backfill then fails like DuckDB's backfill
 * (featurestore/engines/flink/exprs.py). A subclass gives the operation ({@code Math.*Exact}).
 */
public abstract class ExactArithmetic extends ScalarFunction {
    protected abstract int apply(int a, int b);

    protected abstract long apply(long a, long b);

    public Integer eval(Integer a, Integer b) {
        if (a == null || b == null) {
            return null;
        }
        try {
            return apply(a.intValue(), b.intValue());
        } catch (ArithmeticException overflow) {
            return null;
        }
    }

    public Long eval(Long a, Long b) {
        if (a == null || b == null) {
            return null;
        }
        try {
            return apply(a.longValue(), b.longValue());
        } catch (ArithmeticException overflow) {
            return null;
        }
    }
}
