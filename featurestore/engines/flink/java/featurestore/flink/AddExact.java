package featurestore.flink;

/** {@code fs_add_exact(a, b)}: {@code a + b}, NULL where it overflows the type ({@link ExactArithmetic}). */
public class AddExact extends ExactArithmetic {
    @Override
    protected int apply(int a, int b) {
        return Math.addExact(a, b);
    }

    @Override
    protected long apply(long a, long b) {
        return Math.addExact(a, b);
    }
}
