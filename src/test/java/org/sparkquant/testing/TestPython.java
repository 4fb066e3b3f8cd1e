package org.sparkquant.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * The Python interpreter used for cross-checks against independent readers (safetensors, torch, gguf-py).
 * Resolved from {@code SPARKQUANT_PYTHON}, else {@code .venv/bin/python} in the repository (what {@code .ci/run}
 * creates). Tests that need it skip with a message when it is absent or lacks a module.
 */
public final class TestPython {
    private TestPython() {}

    public static Optional<Path> interpreter() {
        String env = System.getenv("SPARKQUANT_PYTHON");
        if (env != null && !env.isBlank()) {
            return Optional.of(Path.of(env));
        }
        Path venv = TestPaths.repository().resolve(".venv/bin/python");
        return Files.isExecutable(venv) ? Optional.of(venv) : Optional.empty();
    }

    /** Skips the calling test unless python is present and can import every module named. */
    public static Path require(String... modules) {
        Optional<Path> python = interpreter();
        assumeTrue(python.isPresent(), "no python: set SPARKQUANT_PYTHON or run .ci/run to create .venv");
        String imports = modules.length == 0 ? "pass" : "import " + String.join(", ", modules);
        Result r = run(python.get(), List.of("-c", imports), 120);
        assumeTrue(r.exitCode() == 0, "python cannot import " + String.join(", ", modules) + ": " + r.stderr().strip());
        return python.get();
    }

    /** Runs a script of the repository's {@code python/} directory (or any path) and returns its result. */
    public static Result run(Path python, List<String> args, long timeoutSeconds) {
        List<String> command = new ArrayList<>();
        command.add(python.toString());
        command.addAll(args);
        try {
            Path out = Files.createTempFile("py-out", ".txt");
            Path err = Files.createTempFile("py-err", ".txt");
            Process p = new ProcessBuilder(command)
                    .directory(TestPaths.repository().toFile())
                    .redirectOutput(out.toFile())
                    .redirectError(err.toFile())
                    .start();
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("python timed out after " + timeoutSeconds + " s: " + command);
            }
            Result r = new Result(p.exitValue(),
                    Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
            return r;
        } catch (IOException e) {
            throw new AssertionError("cannot run " + command, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /** Like {@link #run} but fails the test on a non-zero exit, showing stderr. */
    public static String check(Path python, List<String> args, long timeoutSeconds) {
        Result r = run(python, args, timeoutSeconds);
        if (r.exitCode() != 0) {
            throw new AssertionError("python " + args + " exited " + r.exitCode() + "\n" + r.stderr() + r.stdout());
        }
        return r.stdout();
    }

    public record Result(int exitCode, String stdout, String stderr) {}
}
