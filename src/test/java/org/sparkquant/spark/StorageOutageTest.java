package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.sparkquant.cli.CliRun;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.MotoS3;

/**
 * The storage half of the error contract, with sparkquant's own s3a retry settings (none of the test's): an S3
 * outage in the middle of a run is the environment's failure (exit 1), after s3a's retries, in one line naming the
 * operation and the URI; a malformed {@code fs.s3a.endpoint} is the user's (exit 2) and names the setting; an
 * endpoint that does not answer fails within 30 s, and says that it is waiting meanwhile.
 */
class StorageOutageTest {
    @RegisterExtension
    static final MotoS3 S3 = new MotoS3("sparkquant-outage-test");

    /** Moto's settings without the test's short retries: sparkquant's defaults decide. */
    private static Map<String, String> defaultsOnly(Map<String, String> settings) {
        Map<String, String> out = new LinkedHashMap<>(settings);
        out.keySet().removeIf(k -> k.startsWith("fs.s3a.retry.") || k.equals("fs.s3a.attempts.maximum"));
        return out;
    }

    private static List<String> conf(Map<String, String> settings) {
        List<String> args = new ArrayList<>();
        settings.forEach((k, v) -> args.addAll(List.of("--conf", k + "=" + v)));
        args.addAll(List.of("--conf", "spark.master=local[2]", "--conf", "spark.ui.enabled=false"));
        return args;
    }

    private static void assertOneErrorLine(CliRun run, String... fragments) {
        List<String> errors = run.err().lines().filter(l -> l.startsWith("sparkquant: error")
                || l.startsWith("sparkquant: internal error")).toList();
        assertEquals(1, errors.size(), run.err());
        for (String f : fragments) {
            assertTrue(errors.get(0).contains(f), "'" + f + "' in " + errors.get(0));
        }
        assertFalse(run.err().contains("\tat "), run.err());
        assertFalse(run.err().contains("internal error"), run.err());
        assertFalse(run.err().contains(MotoS3.SECRET_KEY), run.err());
    }

    private static Storage storage;

    @Test
    void anOutageMidRunIsTheEnvironmentsFailureNamingTheUriAndOperation() {
        Map<String, String> settings = defaultsOnly(S3.settings());
        storage = Storage.of(S3.settings());
        String model = S3.uri("models/two-layers");
        SyntheticModel.write(storage, model, SyntheticModel.Preset.TINY, 2, DType.BF16, 5, 1L << 30);
        String calibration = S3.uri("data/calib.txt");
        storage.writeString(calibration, "calibration text on s3, a few words repeated to make tokens.\n".repeat(40));
        String output = S3.uri("out/gptq");
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model, "--output", output,
                "--calibration", calibration, "--samples", "4", "--seq-len", "32", "--samples-per-partition", "2",
                "--group-size", "32"));
        args.addAll(conf(settings));
        long t0 = System.nanoTime();
        CliRun run = CliRun.withFaults((point, i, attempt) -> {
            if (point == FaultHook.Point.LAYER_DONE && i == 0) {
                S3.kill();
            }
        }, args.toArray(String[]::new));
        double seconds = (System.nanoTime() - t0) / 1e9;
        System.out.printf("outage mid-run: exit %d after %.1f s%n%s%n", run.exitCode(), seconds, run.err());
        assertEquals(1, run.exitCode(), run.err());
        assertOneErrorLine(run, "s3a://" + S3.bucket() + "/", "the storage did not answer");
        String line = run.err().lines().filter(l -> l.startsWith("sparkquant: error")).findFirst().orElseThrow();
        assertTrue(line.matches("sparkquant: error: cannot [a-z ]+ s3a://.*"), line);
        assertFalse(run.err().contains("Stream is closed"), run.err());
        assertTrue(seconds < 120, "bounded by s3a's retries: " + seconds + " s");
    }

    @Test
    void aMalformedEndpointNamesTheSetting() {
        for (String endpoint : List.of("http://[not-an-ip", "http://host name with spaces", "http://h:99999999")) {
            Map<String, String> settings = new LinkedHashMap<>(S3.settings());
            settings.put("fs.s3a.endpoint", endpoint);
            List<String> args = new ArrayList<>(List.of("inspect", "--model", "s3a://malformed-endpoint/model"));
            args.addAll(conf(settings));
            CliRun run = CliRun.of(args.toArray(String[]::new));
            assertEquals(2, run.exitCode(), endpoint + ": " + run.err());
            assertOneErrorLine(run, "fs.s3a.endpoint");
        }
    }

    @Test
    void anEndpointOnAClosedPortFailsWithinThirtySeconds() throws Exception {
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        Map<String, String> settings = defaultsOnly(S3.settings());
        settings.put("fs.s3a.endpoint", "http://127.0.0.1:" + port);
        List<String> args = new ArrayList<>(List.of("inspect", "--model", "s3a://closed-port/model"));
        args.addAll(conf(settings));
        long t0 = System.nanoTime();
        CliRun run = CliRun.of(args.toArray(String[]::new));
        double seconds = (System.nanoTime() - t0) / 1e9;
        System.out.printf("closed port: exit %d after %.1f s%n%s%n", run.exitCode(), seconds, run.err());
        assertEquals(1, run.exitCode(), run.err());
        assertOneErrorLine(run, "s3a://closed-port/model", "the storage did not answer");
        assertTrue(seconds < 30, seconds + " s");
    }

    /** An endpoint that accepts a connection and says nothing for a while: the CLI says that it waits. */
    @Test
    void aCallThatWaitsSaysSo() throws Exception {
        try (ServerSocket server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
            Thread silent = new Thread(() -> {
                try (Socket first = server.accept(); InputStream in = first.getInputStream()) {
                    Thread.sleep(6500);
                } catch (IOException | InterruptedException e) {
                    // the test ends
                } finally {
                    try {
                        server.close(); // later attempts find a closed port
                    } catch (IOException ignored) {
                        // closing
                    }
                }
            });
            silent.setDaemon(true);
            silent.start();
            Map<String, String> settings = defaultsOnly(S3.settings());
            settings.put("fs.s3a.endpoint", "http://127.0.0.1:" + server.getLocalPort());
            List<String> args = new ArrayList<>(List.of("inspect", "--model", "s3a://silent-endpoint/model"));
            args.addAll(conf(settings));
            long t0 = System.nanoTime();
            CliRun run = CliRun.of(args.toArray(String[]::new));
            double seconds = (System.nanoTime() - t0) / 1e9;
            System.out.printf("silent endpoint: exit %d after %.1f s%n%s%n", run.exitCode(), seconds, run.err());
            assertEquals(1, run.exitCode(), run.err());
            assertTrue(run.err().contains("sparkquant: waiting for") && run.err().contains("s3a://silent-endpoint"),
                    run.err());
            assertOneErrorLine(run, "s3a://silent-endpoint/model");
            assertTrue(seconds < 40, seconds + " s");
        }
    }
}
