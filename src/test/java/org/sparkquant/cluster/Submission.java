package org.sparkquant.cluster;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * A command run as users run it (a script under deploy/), with its stderr lines kept and shown to a listener as they
 * come (to act at a point of the run), and its stdout in a file.
 */
public final class Submission {
    private final Process process;
    private final List<String> errLines = Collections.synchronizedList(new ArrayList<>());
    private final Thread reader;
    private final Path out;

    private Submission(Process process, Path out, Consumer<String> listener) {
        this.process = process;
        this.out = out;
        this.reader = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getErrorStream(),
                    StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    errLines.add(line);
                    listener.accept(line);
                }
            } catch (IOException e) {
                errLines.add("(stderr unreadable: " + e + ")");
            }
        }, "submission-stderr");
        reader.setDaemon(true);
        reader.start();
    }

    public static Submission start(List<String> command, Map<String, String> env, Path out,
            Consumer<String> stderrListener) {
        ProcessBuilder pb = new ProcessBuilder(command).redirectOutput(out.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        pb.environment().putAll(env);
        try {
            return new Submission(pb.start(), out, stderrListener);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot run " + command, e);
        }
    }

    /** Waits for the exit; after {@code timeoutSeconds} kills the command and what it started, and fails. */
    public int await(long timeoutSeconds) {
        try {
            if (!process.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly();
                throw new AssertionError("still running after " + timeoutSeconds + " s; stderr:\n" + stderrTail());
            }
            reader.join(10_000);
            return process.exitValue();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    public List<String> stderr() {
        synchronized (errLines) {
            return List.copyOf(errLines);
        }
    }

    /** The last lines of stderr, for failure messages. */
    public String stderrTail() {
        List<String> lines = stderr();
        return String.join("\n", lines.subList(Math.max(0, lines.size() - 60), lines.size()));
    }

    public String stdout() {
        try {
            return Files.readString(out, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
