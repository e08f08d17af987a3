package featurestore.flink;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * DuckDB's {@code CAST(text AS INTEGER | BIGINT | DOUBLE | FLOAT)}, value for value: NULL where DuckDB's CAST fails
 * (featurestore/engines/flink/exprs.py records the failure; {@code TRY_CAST} is the same NULL). The SQL functions
 * are the nested classes ({@code fs_text_int}, {@code fs_text_bigint}, {@code fs_text_double},
 * {@code fs_text_float}).
 *
 * <p>Integers follow DuckDB's integer reader, quirks included: spaces (ASCII space, \t \n \v \f \r) around the
 * number; one sign; digits with single underscores between them; {@code 0x}/{@code 0b} prefixes without a sign
 * or trailing spaces; a fraction rounds half away from zero on its first digit; an exponent of at most 16 bits
 * with at least one digit (it may end in a '.'), applied to the integer part in 64 bits (a negative one rounds
 * on the last digit shifted out, the fraction ignored).
 *
 * <p>Floats: spaces around, an optional '+' before an optional '-', then {@code inf}, {@code infinity} or
 * {@code nan} in any case, or digits (single underscores between them) with an optional fraction and exponent,
 * rounded once to the target type (a FLOAT is not rounded through a double); out of range is an infinity, not a
 * failure; {@code nan(chars)} is a NaN too. DuckDB misreads a text with an underscore and more than 19 digits (its long-mantissa path counts the
 * underscore as a digit): NULL here, and {@link #unsupported} tells the compiler to fail such a row loudly.
 */
public final class NumberText {
    private NumberText() {
    }

    private static boolean space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == 0x0B || c == '\f' || c == '\r';
    }

    /** Whether {@code s} holds only spaces from {@code from} on (a number's trailing spaces). */
    private static boolean spacesOnly(String s, int from) {
        for (int i = from; i < s.length(); i++) {
            if (!space(s.charAt(i))) {
                return false;
            }
        }
        return true;
    }

    /** Past a digit at {@code pos - 1}: {@code pos}, or past one {@code _} that a digit follows; -1 for a
     * {@code _} without a digit after it (DuckDB's digit separator). */
    private static int afterSeparator(String s, int pos) {
        if (pos < s.length() && s.charAt(pos) == '_') {
            return pos + 1 < s.length() && digit(s.charAt(pos + 1)) ? pos + 1 : -1;
        }
        return pos;
    }

    private static boolean digit(char c) {
        return c >= '0' && c <= '9';
    }

    /** A text with an underscore and more than 19 ASCII digits: DuckDB's float reader gives a wrong value. */
    public static boolean unsupported(String s) {
        if (s.indexOf('_') < 0) {
            return false;
        }
        int digits = 0;
        for (int i = 0; i < s.length(); i++) {
            if (digit(s.charAt(i))) {
                digits++;
            }
        }
        return digits > 19;
    }

    // -- integers ---------------------------------------------------------------------------------------------
    /** The integer DuckDB reads from {@code s} in [lo, hi], or null where its CAST fails. */
    static Long toInteger(String s, long lo, long hi) {
        int i = 0;
        int n = s.length();
        while (i < n && space(s.charAt(i))) {
            i++;
        }
        if (i == n) {
            return null;
        }
        if (s.charAt(i) != '-' && n - i > 1 && s.charAt(i) == '0') {
            char p = s.charAt(i + 1);
            if (p == 'x' || p == 'X') {
                return radix(s, i + 2, 16, hi);
            }
            if (p == 'b' || p == 'B') {
                return radix(s, i + 2, 2, hi);
            }
        }
        return new Decimal(s, i, lo, hi).read();
    }

    private static Long radix(String s, int start, int base, long hi) {
        long v = 0;
        int pos = start;
        while (pos < s.length()) {
            int d = value(s.charAt(pos), base);
            if (d < 0) {
                return null;
            }
            pos++;
            if (pos < s.length() && s.charAt(pos) == '_') {
                pos++;
                if (pos == s.length() || value(s.charAt(pos), base) < 0) {
                    return null;
                }
            }
            if (v > (Long.MAX_VALUE - d) / base) {
                return null;
            }
            v = v * base + d;
        }
        return pos > start && v <= hi ? v : null;
    }

    /** The ASCII digit's value in {@code base} (2 or 16), or -1. */
    private static int value(char c, int base) {
        int v = digit(c) ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        return v < base ? v : -1;
    }

    /** DuckDB's reader of a decimal integer text (sign, digits, fraction, exponent) into [lo, hi]. */
    private static final class Decimal {
        private final String s;
        private final int n;
        private final long lo;
        private final long hi;
        private final boolean negative;
        private final int start;
        private long result;
        private long fraction;  // the fraction's digits while they fit a long, then their rounding carry
        private int fractionDigits;  // 16 bits unsigned, as DuckDB keeps it

        Decimal(String s, int at, long lo, long hi) {
            this.s = s;
            this.n = s.length();
            this.lo = lo;
            this.hi = hi;
            this.negative = s.charAt(at) == '-';
            this.start = at + (s.charAt(at) == '-' || s.charAt(at) == '+' ? 1 : 0);
        }

        Long read() {
            int pos = start;
            int digits = 0;
            while (pos < n) {
                char c = s.charAt(pos);
                if (!digit(c)) {
                    if (c == '.') {
                        boolean before = pos > start;
                        pos++;
                        int first = pos;
                        while (pos < n && digit(s.charAt(pos))) {
                            addFractionDigit(s.charAt(pos) - '0');
                            digits++;
                            pos++;
                            pos = afterSeparator(s, pos);
                            if (pos < 0) {
                                return null;
                            }
                        }
                        if (!(before || pos > first)) {
                            return null;
                        }
                        if (pos >= n) {
                            break;
                        }
                        c = s.charAt(pos);
                    }
                    if (space(c)) {
                        if (!spacesOnly(s, pos + 1)) {
                            return null;
                        }
                        break;
                    }
                    if ((c == 'e' || c == 'E') && pos != start && pos + 1 < n) {
                        Integer e = exponent(s, pos + 1);
                        return e == null ? null : applyExponent(e);
                    }
                    return null;
                }
                int d = c - '0';
                if (negative ? result < (Long.MIN_VALUE + d) / 10 : result > (Long.MAX_VALUE - d) / 10) {
                    return null;
                }
                result = result * 10 + (negative ? -d : d);
                digits++;
                pos++;
                pos = afterSeparator(s, pos);
                if (pos < 0) {
                    return null;
                }
            }
            return digits > 0 ? finish() : null;
        }

        private void addFractionDigit(int d) {
            if (fraction > (Long.MAX_VALUE - d) / 10) {
                return;  // later digits are ignored
            }
            fractionDigits = (fractionDigits + 1) & 0xFFFF;
            fraction = fraction * 10 + d;
        }

        private Long applyExponent(int exponent) {
            if (exponent < 0) {
                for (int e = exponent; e < 0; e++) {  // the last digit shifted out decides the rounding
                    fraction = result % 10;
                    result /= 10;
                }
                fraction = Math.abs(fraction);
                fractionDigits = 1;
                return finish();
            }
            try {
                for (int e = exponent; result != 0 && e > 0; e--) {
                    result = Math.multiplyExact(result, 10L);
                }
                if (fraction == 0) {
                    return finish();
                }
                int e = (short) (exponent - fractionDigits);
                long remainder = 0;
                if (e < 0) {
                    if (-e <= 19) {
                        long power = 1;
                        for (int k = e; k < 0; k++) {
                            power *= 10;  // 10^19 wraps, as DuckDB's
                        }
                        remainder = fraction % power;
                        fraction /= power;
                    } else {
                        fraction = 0;
                    }
                } else {
                    for (int k = e; k > 0; k--) {
                        fraction = Math.multiplyExact(fraction, 10L);
                    }
                }
                fractionDigits = (fractionDigits - exponent) & 0xFFFF;
                result = negative ? Math.subtractExact(result, fraction) : Math.addExact(result, fraction);
                fraction = remainder;
            } catch (ArithmeticException overflow) {
                return null;
            }
            return finish();
        }

        private Long finish() {
            if (result < lo || result > hi) {
                return null;
            }
            while (fraction > 10) {
                fraction /= 10;
                fractionDigits = (fractionDigits - 1) & 0xFFFF;
            }
            if (fractionDigits == 1 && fraction >= 5) {  // half away from zero
                return negative ? (result == lo ? null : result - 1) : (result == hi ? null : result + 1);
            }
            return result;
        }
    }

    /** DuckDB's 16-bit exponent after 'e' (a sign, digits with single underscores, spaces or a '.' after). */
    private static Integer exponent(String s, int at) {
        int n = s.length();
        boolean negative = s.charAt(at) == '-';
        int start = at + (negative || s.charAt(at) == '+' ? 1 : 0);
        int v = 0;
        int digits = 0;
        int pos = start;
        while (pos < n) {
            char c = s.charAt(pos);
            if (!digit(c)) {
                if (c == '.') {
                    boolean before = pos > start;
                    pos++;
                    if (pos < n && digit(s.charAt(pos))) {
                        return null;  // no fraction in an exponent
                    }
                    if (!before) {
                        return null;
                    }
                    if (pos >= n) {
                        break;
                    }
                    c = s.charAt(pos);
                }
                if (space(c)) {
                    if (!spacesOnly(s, pos + 1)) {
                        return null;
                    }
                    break;
                }
                return null;
            }
            int d = c - '0';
            if (negative ? v < (Short.MIN_VALUE + d) / 10 : v > (Short.MAX_VALUE - d) / 10) {
                return null;
            }
            v = v * 10 + (negative ? -d : d);
            digits++;
            pos++;
            pos = afterSeparator(s, pos);
            if (pos < 0) {
                return null;
            }
        }
        return digits > 0 ? v : null;
    }

    // -- floats -----------------------------------------------------------------------------------------------
    /** The text Java parses as DuckDB reads {@code s} ("NaN", "-Infinity", digits without underscores), or null. */
    static String floatText(String s) {
        int n = s.length();
        while (n > 0 && space(s.charAt(n - 1))) {
            n--;
        }
        int i = 0;
        while (i < n && space(s.charAt(i))) {
            i++;
        }
        if (i < n && s.charAt(i) == '+') {
            i++;
        }
        StringBuilder out = new StringBuilder(n - i);
        if (i < n && s.charAt(i) == '-') {
            out.append('-');
            i++;
        }
        String rest = s.substring(i, n).toLowerCase(java.util.Locale.ROOT);
        if (rest.equals("nan") || rest.matches("nan\\([a-z0-9_]*\\)")) {  // nan(chars), as C's strtod
            return "NaN";
        }
        if (rest.equals("inf") || rest.equals("infinity")) {
            return out.append("Infinity").toString();
        }
        int mantissa = 0;
        int pos = digits(s, i, n, out);
        mantissa += pos - i;
        if (pos < n && s.charAt(pos) == '.') {
            out.append('.');
            int from = pos + 1;
            pos = digits(s, from, n, out);
            mantissa += pos - from;
        }
        if (mantissa == 0) {
            return null;
        }
        if (pos < n && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
            out.append('e');
            int at = pos + 1;
            if (at < n && (s.charAt(at) == '+' || s.charAt(at) == '-')) {
                out.append(s.charAt(at));
                at++;
            }
            pos = digits(s, at, n, out);
            if (pos == at) {
                return null;
            }
        }
        return pos == n && !unsupported(s) ? out.toString() : null;
    }

    /** Digits with single underscores between them from {@code at}, appended without the underscores: the
     * position after them (an underscore not between two digits ends them where it stands). */
    private static int digits(String s, int at, int n, StringBuilder out) {
        int pos = at;
        while (pos < n && digit(s.charAt(pos))) {
            out.append(s.charAt(pos));
            pos++;
            if (pos + 1 < n && s.charAt(pos) == '_' && digit(s.charAt(pos + 1))) {
                pos++;
            }
        }
        return pos;
    }

    static Double toDouble(String s) {
        String text = floatText(s);
        return text == null ? null : Double.parseDouble(text);
    }

    static Float toFloat(String s) {
        String text = floatText(s);
        return text == null ? null : Float.parseFloat(text);
    }

    // -- the SQL functions ------------------------------------------------------------------------------------
    /** {@code fs_text_int(text)}: DuckDB's {@code CAST(text AS INTEGER)}, NULL where it fails. */
    public static class ToInteger extends ScalarFunction {
        public Integer eval(String s) {
            Long v = s == null ? null : toInteger(s, Integer.MIN_VALUE, Integer.MAX_VALUE);
            return v == null ? null : v.intValue();
        }
    }

    /** {@code fs_text_bigint(text)}: DuckDB's {@code CAST(text AS BIGINT)}, NULL where it fails. */
    public static class ToBigint extends ScalarFunction {
        public Long eval(String s) {
            return s == null ? null : toInteger(s, Long.MIN_VALUE, Long.MAX_VALUE);
        }
    }

    /** {@code fs_text_double(text)}: DuckDB's {@code CAST(text AS DOUBLE)}, NULL where it fails. */
    public static class ToDouble extends ScalarFunction {
        public Double eval(String s) {
            return s == null ? null : toDouble(s);
        }
    }

    /** {@code fs_text_float(text)}: DuckDB's {@code CAST(text AS FLOAT)}, NULL where it fails. */
    public static class ToFloat extends ScalarFunction {
        public Float eval(String s) {
            return s == null ? null : toFloat(s);
        }
    }
}
