package org.sparkquant;

/**
 * The project's error. {@link Kind#BAD_INPUT} is the user's problem (a missing file, a malformed header, a wrong
 * flag): the CLI prints its one-line message and exits 2. {@link Kind#ENVIRONMENT} is the machine's (a BLAS library
 * that miscomputes): exit 1 with the fix in the message. {@link Kind#INTERNAL} is ours, a bug: exit 1.
 */
public class SparkQuantException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public enum Kind { BAD_INPUT, ENVIRONMENT, INTERNAL }

    private final Kind kind;

    public SparkQuantException(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    public static SparkQuantException badInput(String message) {
        return new SparkQuantException(Kind.BAD_INPUT, message, null);
    }

    public static SparkQuantException badInput(String message, Throwable cause) {
        return new SparkQuantException(Kind.BAD_INPUT, message, cause);
    }

    public static SparkQuantException environment(String message) {
        return new SparkQuantException(Kind.ENVIRONMENT, message, null);
    }

    public static SparkQuantException internal(String message, Throwable cause) {
        return new SparkQuantException(Kind.INTERNAL, message, cause);
    }

    public Kind kind() {
        return kind;
    }

    public int exitCode() {
        return kind == Kind.BAD_INPUT ? 2 : 1;
    }
}
