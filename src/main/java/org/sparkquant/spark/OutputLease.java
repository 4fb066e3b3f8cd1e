package org.sparkquant.spark;

import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.time.Duration;
import java.time.Instant;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;

/**
 * One owner per output. A run takes the output's lease before it touches the output: a small file
 * ({@code OUTPUT/_lease.json}, or {@code NAME.lease.json} beside a GGUF file) created only if absent, atomically
 * (see {@link Storage#createExclusive}), naming the owner, its host and process, when it started and when it was
 * last seen. A heartbeat renews it; the run checks it at every layer and before it commits, and gives it back at the
 * end. A second run, with or without {@code --resume}, is refused while the lease is fresh; a lease whose heartbeat
 * stopped longer than the timeout ago (a killed run, an Airflow retry after a dead worker) is taken over by
 * {@code --resume}.
 */
public final class OutputLease implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Storage storage;
    private final String uri;
    private final String output;
    private final String owner;
    private final String host;
    private final long pid;
    private final Instant started;
    private final ScheduledExecutorService heartbeat;
    private volatile String lostTo;

    private OutputLease(Storage storage, String uri, String output) {
        this.storage = storage;
        this.uri = uri;
        this.output = output;
        this.owner = UUID.randomUUID().toString();
        this.host = hostName();
        this.pid = ProcessHandle.current().pid();
        this.started = Instant.now();
        this.heartbeat = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "sparkquant-lease");
            t.setDaemon(true);
            return t;
        });
    }

    /** Starts renewing the lease once this run holds it. */
    private OutputLease beat(Duration timeout) {
        long period = Math.max(1000, timeout.toMillis() / 10);
        heartbeat.scheduleAtFixedRate(this::renew, period, period, TimeUnit.MILLISECONDS);
        return this;
    }

    /**
     * Takes the lease at {@code uri} for {@code output}, or refuses with one line naming the owner and when it was
     * last seen. {@code resume} allows taking over a lease that has not been renewed for {@code timeout}.
     */
    public static OutputLease acquire(Storage storage, String uri, String output, boolean resume, Duration timeout) {
        String self = "run " + ManagementFactory.getRuntimeMXBean().getName();
        for (int attempt = 0; attempt < 3; attempt++) {
            OutputLease lease = new OutputLease(storage, uri, output);
            if (storage.createExclusive(uri, lease.record(Instant.now()))) {
                return lease.beat(timeout);
            }
            lease.heartbeat.shutdownNow();
            JsonNode held = read(storage, uri);
            if (held == null) {
                continue; // released in between: try again
            }
            Instant seen = Instant.ofEpochMilli(held.path("heartbeat_ms").asLong(0));
            long age = Math.max(0, Duration.between(seen, Instant.now()).toSeconds());
            String who = "run " + held.path("owner").asText("?") + " on " + held.path("host").asText("?") + " (pid "
                    + held.path("pid").asText("?") + ", started " + Instant.ofEpochMilli(held.path("started_ms")
                    .asLong(0)) + ", last seen " + age + " s ago)";
            if (age < timeout.toSeconds()) {
                throw SparkQuantException.badInput(output + " is being written by " + who + "; two runs never write "
                        + "one output. If that run is dead, retry with --resume once its lease is "
                        + timeout.toSeconds() + " s old");
            }
            if (!resume) {
                throw SparkQuantException.badInput(output + " has the lease of an unfinished " + who + "; add --resume "
                        + "to take it over and continue its work");
            }
            storage.delete(uri); // stale: the next attempt's exclusive create decides between racing takers
        }
        throw SparkQuantException.badInput(output + ": another run took over its lease first (" + self + " lost)");
    }

    /** Fails when another run has taken the lease over (this run was paused beyond the timeout). */
    public void check() {
        if (lostTo != null) {
            throw SparkQuantException.environment(output + ": this run lost its lease to " + lostTo
                    + " and stops without writing more");
        }
    }

    /** Gives the lease back (when it is still this run's). */
    @Override
    public void close() {
        heartbeat.shutdownNow();
        JsonNode held = read(storage, uri);
        if (held != null && owner.equals(held.path("owner").asText())) {
            storage.delete(uri);
        }
    }

    private void renew() {
        try {
            JsonNode held = read(storage, uri);
            if (held == null || !owner.equals(held.path("owner").asText())) {
                lostTo = held == null ? "nobody (the lease was deleted)" : "run " + held.path("owner").asText()
                        + " on " + held.path("host").asText();
                heartbeat.shutdown();
                return;
            }
            storage.writeString(uri, record(Instant.now()));
        } catch (RuntimeException e) {
            // a storage hiccup: the next beat tries again; the lease only goes stale after the timeout
        }
    }

    private String record(Instant now) {
        ObjectNode n = JSON.createObjectNode();
        n.put("format", "sparkquant-lease-v1");
        n.put("output", output);
        n.put("owner", owner);
        n.put("host", host);
        n.put("pid", pid);
        n.put("started_ms", started.toEpochMilli());
        n.put("heartbeat_ms", now.toEpochMilli());
        return n.toPrettyString() + "\n";
    }

    private static JsonNode read(Storage storage, String uri) {
        try {
            if (!storage.exists(uri)) {
                return null;
            }
            return JSON.readTree(storage.readString(uri));
        } catch (SparkQuantException e) {
            return null; // gone between the two calls
        } catch (Exception e) {
            // unreadable: treat as a lease of unknown age (heartbeat 0), which only --resume takes over
            return JSON.createObjectNode().put("owner", "unknown");
        }
    }

    private static String hostName() {
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (Exception e) {
            return "unknown-host";
        }
    }
}
