package featurestore.flink;

/** {@code fs_multiply_exact(a, b)}: {@code a * b}, NULL where it overflows the type ({@link ExactArithmetic}). */
public class MultiplyExact extends ExactArithmetic {
    @Override
    protected int apply(int a, int b) {
        return Math.multiplyExact(a, b);
    }

    @Override
    protected long apply(long a, long b) {
        return Math.multiplyExact(a, b);
    }
}
