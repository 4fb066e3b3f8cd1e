package org.sparkquant.testing;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

import org.sparkquant.cli.SparkQuant;
import org.sparkquant.spark.FaultHook;

/**
 * The CLI as a child JVM's main class, for crash tests. It halts the JVM ({@link Runtime#halt}: no shutdown hooks,
 * no finally blocks, no lease given back, as a {@code kill -9} or a lost node) just before one of the driver's state
 * changes ({@link FaultHook#atState}): {@code HaltingCli --chain FILE args...} halts before the first state change
 * whose name is not yet a line of FILE, after adding it there. Running it again with {@code --resume} until it exits
 * 0 halts a chain of resumed runs once at every distinct state change; with {@code --chain FILE --only NAMES args...}
 * only at those listed in the file NAMES. The hook is a programmatic test seam; no user-visible option reaches it.
 */
public final class HaltingCli {
    /** The exit code of a halted child. */
    public static final int HALTED = 86;

    private HaltingCli() {}

    public static void main(String[] args) throws IOException {
        if (!args[0].equals("--chain")) {
            throw new IllegalArgumentException("usage: HaltingCli --chain FILE sparkquant-args...");
        }
        int from = 2;
        Set<String> only = null;
        if (args[2].equals("--only")) {
            only = new HashSet<>(Files.readAllLines(Path.of(args[3]), StandardCharsets.UTF_8));
            from = 4;
        }
        FaultHook halt = new ChainHalt(args[1], only);
        String[] cli = Arrays.copyOfRange(args, from, args.length);
        System.exit(SparkQuant.execute(halt, new PrintWriter(System.out, true), new PrintWriter(System.err, true),
                cli));
    }

    /** Halts before the first state change not listed in the file (the hook is serialized to executors with the run). */
    private static final class ChainHalt implements FaultHook {
        private static final long serialVersionUID = 1L;
        private final String file;
        private final HashSet<String> visited;
        /** If not null, the only state changes to halt at. */
        private final HashSet<String> only;

        ChainHalt(String file, Set<String> only) throws IOException {
            this.file = file;
            this.visited = new HashSet<>(Files.readAllLines(Path.of(file), StandardCharsets.UTF_8));
            this.only = only == null ? null : new HashSet<>(only);
        }

        @Override
        public void at(Point point, int index, int attempt) {}

        @Override
        public void atState(int index, String what) {
            if (!visited.contains(what) && (only == null || only.contains(what))) {
                try {
                    Files.writeString(Path.of(file), what + "\n", StandardCharsets.UTF_8, StandardOpenOption.APPEND,
                            StandardOpenOption.SYNC);
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
                System.err.println("halting before state change " + index + ": " + what);
                System.err.flush();
                Runtime.getRuntime().halt(HALTED);
            }
        }
    }
}
