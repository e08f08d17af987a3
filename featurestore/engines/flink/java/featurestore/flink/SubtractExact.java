package featurestore.flink;

/** {@code fs_subtract_exact(a, b)}: {@code a - b}, NULL where it overflows the type ({@link ExactArithmetic}). */
public class SubtractExact extends ExactArithmetic {
    @Override
    protected int apply(int a, int b) {
        return Math.subtractExact(a, b);
    }

    @Override
    protected long apply(long a, long b) {
        return Math.subtractExact(a, b);
    }
}
