package org.sparkquant.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.net.HttpURLConnection;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.opentest4j.TestAbortedException;

/**
 * An S3 server for tests: moto in server mode, run by the system {@code python3} (moto is installed in the machine
 * image, not in the project's venv; {@code SPARKQUANT_MOTO_PYTHON} overrides the interpreter), on a free loopback port.
 * Use it as a JUnit 5 extension, which starts it before the class and stops it after:
 *
 * <pre>{@code
 * @RegisterExtension
 * static final MotoS3 S3 = new MotoS3("models");
 * ...
 * Storage storage = Storage.of(S3.settings());
 * storage.writeString(S3.uri("model/config.json"), json);
 * }</pre>
 *
 * Each test is skipped with a message when python3 cannot import moto. The credentials are dummies; {@link #SECRET_KEY}
 * is distinctive so that tests can assert it never appears in an error message.
 */
public final class MotoS3 implements BeforeAllCallback, BeforeEachCallback, AfterAllCallback, AutoCloseable {
    public static final String ACCESS_KEY = "moto-test-access-key";
    public static final String SECRET_KEY = "moto-test-SECRET-4f1c9e2a7b";
    private static final long START_TIMEOUT_MS = 60_000;

    private final String bucket;
    private final List<String> buckets = new ArrayList<>();
    private Process process;
    private Path log;
    private int port;
    private String unavailable;

    /** A server with one bucket. Give each test class its own bucket name: Hadoop caches file systems by bucket. */
    public MotoS3(String bucket) {
        this.bucket = bucket;
    }

    private static String python() {
        String env = System.getenv("SPARKQUANT_MOTO_PYTHON");
        return env == null || env.isBlank() ? "python3" : env;
    }

    @Override
    public void beforeAll(ExtensionContext context) {
        try {
            start();
        } catch (TestAbortedException e) {
            // reported on each test (a class-level abort shows as "Tests run: 0", without the reason)
            unavailable = String.valueOf(e.getMessage()).replaceFirst("^Assumption failed: ", "");
        }
    }

    @Override
    public void beforeEach(ExtensionContext context) {
        assumeTrue(unavailable == null, unavailable);
    }

    @Override
    public void afterAll(ExtensionContext context) {
        close();
    }

    /** Starts the server and creates the bucket; skips the calling test (or class) when moto is missing. */
    public synchronized void start() {
        if (process != null) {
            return;
        }
        String probe = runQuietly(List.of(python(), "-c", "import moto"));
        assumeTrue(probe == null, "S3 tests need moto in the system python3 (" + python() + " -c 'import moto': "
                + probe + ")");
        try {
            log = Files.createTempFile("moto-server", ".log");
            port = freePort();
            process = new ProcessBuilder(python(), "-m", "moto.server", "-H", "127.0.0.1", "-p",
                    Integer.toString(port))
                    .redirectErrorStream(true)
                    .redirectOutput(log.toFile())
                    .start();
            waitUntilUp();
            createBucket(bucket);
        } catch (IOException e) {
            close();
            throw new IllegalStateException("cannot start moto: " + e.getMessage() + "\n" + logTail(), e);
        } catch (RuntimeException | Error e) {
            close();
            throw e;
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    /** Polls until the server answers HTTP (any status), the process dies or the timeout passes. */
    private void waitUntilUp() {
        long deadline = System.currentTimeMillis() + START_TIMEOUT_MS;
        IOException last = null;
        while (System.currentTimeMillis() < deadline) {
            if (!process.isAlive()) {
                throw new IllegalStateException("moto exited with " + process.exitValue() + ":\n" + logTail());
            }
            try {
                HttpURLConnection c = (HttpURLConnection) new URL(endpoint() + "/").openConnection();
                c.setConnectTimeout(500);
                c.setReadTimeout(2000);
                c.getResponseCode();
                c.disconnect();
                return;
            } catch (IOException e) {
                last = e;
            }
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
        throw new IllegalStateException("moto did not answer on " + endpoint() + " within " + START_TIMEOUT_MS
                + " ms (" + last + "):\n" + logTail());
    }

    /** Creates a bucket with a plain HTTP PUT (moto accepts unsigned requests). */
    public void createBucket(String name) {
        try {
            HttpURLConnection c = (HttpURLConnection) new URL(endpoint() + "/" + name).openConnection();
            c.setRequestMethod("PUT");
            c.setDoOutput(true);
            c.setFixedLengthStreamingMode(0);
            c.getOutputStream().close();
            int code = c.getResponseCode();
            c.disconnect();
            if (code != 200) {
                throw new IllegalStateException("creating bucket " + name + " answered HTTP " + code);
            }
            buckets.add(name);
        } catch (IOException e) {
            throw new IllegalStateException("cannot create bucket " + name + ": " + e.getMessage(), e);
        }
    }

    public String endpoint() {
        return "http://127.0.0.1:" + port;
    }

    public String bucket() {
        return bucket;
    }

    /** {@code s3a://bucket/key}. */
    public String uri(String key) {
        return "s3a://" + bucket + "/" + key;
    }

    /**
     * Hadoop settings for {@code Storage.of} (prefix each with {@code spark.hadoop.} for Spark): path-style requests
     * to the local endpoint without TLS, dummy static credentials, 8 MB multipart, and few retries so that a test
     * of a failure fails fast.
     */
    public Map<String, String> settings() {
        Map<String, String> s = new LinkedHashMap<>();
        s.put("fs.s3a.endpoint", endpoint());
        s.put("fs.s3a.endpoint.region", "us-east-1");
        s.put("fs.s3a.path.style.access", "true");
        s.put("fs.s3a.connection.ssl.enabled", "false");
        s.put("fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider");
        s.put("fs.s3a.access.key", ACCESS_KEY);
        s.put("fs.s3a.secret.key", SECRET_KEY);
        s.put("fs.s3a.multipart.size", "8M");
        s.put("fs.s3a.multipart.threshold", "8M");
        s.put("fs.s3a.fast.upload.buffer", "bytebuffer");
        s.put("fs.s3a.attempts.maximum", "2");
        s.put("fs.s3a.retry.limit", "2");
        s.put("fs.s3a.retry.interval", "100ms");
        return s;
    }

    /**
     * Kills the server, as an outage would: the clients' file systems stay open and their next calls find nobody on
     * the port.
     */
    public synchronized void kill() {
        if (process != null) {
            List<ProcessHandle> children = process.descendants().toList();
            children.forEach(ProcessHandle::destroyForcibly);
            process.destroyForcibly();
            try {
                process.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            process = null;
        }
    }

    /** Stops the server and drops Hadoop's cached file systems of its buckets (they point at this port). */
    @Override
    public synchronized void close() {
        Configuration conf = new Configuration();
        settings().forEach(conf::set);
        for (String b : buckets) {
            try {
                FileSystem.get(URI.create("s3a://" + b + "/"), conf).close();
            } catch (IOException | RuntimeException ignored) {
                // best effort: the server is going away anyway
            }
        }
        buckets.clear();
        if (process != null) {
            // the python3 on PATH may be a launcher script; stop what it started too, by process id
            List<ProcessHandle> children = process.descendants().toList();
            process.destroy();
            children.forEach(ProcessHandle::destroy);
            try {
                if (!process.waitFor(5, TimeUnit.SECONDS)) {
                    process.destroyForcibly();
                    children.forEach(ProcessHandle::destroyForcibly);
                    process.waitFor(5, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            process = null;
        }
        if (log != null) {
            try {
                Files.deleteIfExists(log);
            } catch (IOException ignored) {
                // a temp file
            }
            log = null;
        }
    }

    private String logTail() {
        try {
            String text = log == null ? "" : Files.readString(log, StandardCharsets.UTF_8);
            return text.length() > 4000 ? text.substring(text.length() - 4000) : text;
        } catch (IOException e) {
            return "(no log: " + e.getMessage() + ")";
        }
    }

    /** Runs a command; null when it exits 0 within 60 s, else what went wrong. */
    private static String runQuietly(List<String> command) {
        try {
            Path out = Files.createTempFile("moto-probe", ".txt");
            try {
                Process p = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(out.toFile()).start();
                if (!p.waitFor(60, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    return "timed out";
                }
                String text = Files.readString(out, StandardCharsets.UTF_8).strip();
                return p.exitValue() == 0 ? null : "exit " + p.exitValue() + ": " + text.lines().reduce((a, b) -> b)
                        .orElse("");
            } finally {
                Files.deleteIfExists(out);
            }
        } catch (IOException e) {
            return e.getMessage();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "interrupted";
        }
    }
}
