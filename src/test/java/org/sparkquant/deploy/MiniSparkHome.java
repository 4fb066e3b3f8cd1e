package org.sparkquant.deploy;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.stream.Stream;

import org.sparkquant.testing.TestPaths;

/**
 * A Spark installation made from the build's own jars, enough for {@code spark-submit --master local[N]}: {@code jars/}
 * links Spark, Hadoop and sparkquant's runtime dependencies (the classpath files the pom writes), and
 * {@code bin/spark-submit} runs Spark's own launcher ({@code org.apache.spark.launcher.Main}), which builds the driver
 * JVM's command line from the submit options (driver memory, extraJavaOptions, module flags) as Spark's script does.
 * The application jar is sparkquant's classes alone ({@link #applicationJar}): the shaded jar exists only after
 * {@code package}, and these tests run before it.
 */
final class MiniSparkHome {
    private final Path home;
    private final Path applicationJar;

    private MiniSparkHome(Path home, Path applicationJar) {
        this.home = home;
        this.applicationJar = applicationJar;
    }

    static MiniSparkHome create(Path dir) throws IOException {
        Path target = TestPaths.repository().resolve("target");
        Set<String> jars = new LinkedHashSet<>();
        for (String list : List.of("classpath-provided.txt", "classpath.txt")) {
            Path file = target.resolve(list);
            assertTrue(Files.isRegularFile(file), file + " is written by the build (maven-dependency-plugin)");
            for (String entry : Files.readString(file).strip().split(":")) {
                if (entry.endsWith(".jar")) {
                    jars.add(entry);
                }
            }
        }
        Path home = dir.resolve("spark-home");
        Path lib = Files.createDirectories(home.resolve("jars"));
        for (String jar : jars) {
            Path p = Path.of(jar);
            Path link = lib.resolve(p.getFileName());
            if (!Files.exists(link)) {
                Files.createSymbolicLink(link, p);
            }
        }
        Path bin = Files.createDirectories(home.resolve("bin"));
        Path submit = bin.resolve("spark-submit");
        Files.writeString(submit, """
                #!/usr/bin/env bash
                # spark-submit of a minimal Spark home. Spark's launcher prints its messages, a NUL and a newline,
                # then the driver command NUL-separated; this script adds the launcher's exit code.
                set -euo pipefail
                export SPARK_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
                export SPARK_SCALA_VERSION="${SPARK_SCALA_VERSION:-2.13}"
                java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
                parts=()
                while IFS= read -r -d '' arg; do parts+=("$arg"); done < <(
                  "$java_bin" -Xmx128m -cp "$SPARK_HOME/jars/*" org.apache.spark.launcher.Main \\
                    org.apache.spark.deploy.SparkSubmit "$@"; printf '%d\\0' $?)
                code="${parts[${#parts[@]}-1]}"
                [[ -n "${parts[0]}" ]] && printf '%s' "${parts[0]}" >&2
                (( code == 0 )) || exit "$code"
                cmd=("${parts[@]:1:${#parts[@]}-2}")
                cmd[0]="${cmd[0]#$'\\n'}"
                exec "${cmd[@]}"
                """, StandardCharsets.UTF_8);
        Files.setPosixFilePermissions(submit, PosixFilePermissions.fromString("rwxr-xr-x"));
        return new MiniSparkHome(home, jarOfClasses(target.resolve("classes"), dir.resolve("sparkquant-app.jar")));
    }

    Path home() {
        return home;
    }

    Path sparkSubmit() {
        return home.resolve("bin/spark-submit");
    }

    /** sparkquant's compiled classes and resources as an application jar (its dependencies are in jars/). */
    Path applicationJar() {
        return applicationJar;
    }

    private static Path jarOfClasses(Path classes, Path jar) throws IOException {
        Manifest manifest = new Manifest();
        manifest.getMainAttributes().put(Attributes.Name.MANIFEST_VERSION, "1.0");
        manifest.getMainAttributes().put(Attributes.Name.MAIN_CLASS, "org.sparkquant.cli.SparkQuant");
        try (OutputStream file = Files.newOutputStream(jar);
                JarOutputStream out = new JarOutputStream(file, manifest);
                Stream<Path> walk = Files.walk(classes)) {
            for (Path p : walk.filter(Files::isRegularFile).sorted().toList()) {
                out.putNextEntry(new JarEntry(classes.relativize(p).toString().replace('\\', '/')));
                Files.copy(p, out);
                out.closeEntry();
            }
        }
        return jar;
    }

    /** Runs a command in {@code dir} with extra environment variables (a null value removes the variable). */
    static Result run(List<String> command, Map<String, String> env, Path dir, long timeoutSeconds) {
        try {
            Path out = Files.createTempFile(dir, "out", ".txt");
            Path err = Files.createTempFile(dir, "err", ".txt");
            ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile())
                    .redirectOutput(out.toFile()).redirectError(err.toFile());
            env.forEach((k, v) -> {
                if (v == null) {
                    pb.environment().remove(k);
                } else {
                    pb.environment().put(k, v);
                }
            });
            Process p = pb.start();
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly();
                throw new AssertionError("timed out after " + timeoutSeconds + " s: " + command + "\n"
                        + Files.readString(err));
            }
            return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    record Result(int exitCode, String out, String err) {
        Result assertOk(String what) {
            if (exitCode != 0) {
                throw new AssertionError(what + " exited " + exitCode + "\n--- stderr\n" + tail(err) + "\n--- stdout\n"
                        + tail(out));
            }
            return this;
        }

        private static String tail(String s) {
            return s.length() > 6000 ? "…" + s.substring(s.length() - 6000) : s;
        }
    }
}
