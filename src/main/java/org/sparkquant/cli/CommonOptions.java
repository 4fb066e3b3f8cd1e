package org.sparkquant.cli;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;

import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.spark.SparkSessions;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * Options every command shares. Settings are layered: {@code $SPARKQUANT_CONF_DIR/sparkquant.properties}, then
 * {@code --conf key=value} (for the file systems, over the {@code spark.hadoop.*} settings given to spark-submit). Keys {@code fs.*} and {@code spark.hadoop.*} configure the file systems (e.g.
 * {@code fs.s3a.endpoint}); other {@code spark.*} keys configure Spark. Values are never printed, since they may hold
 * secrets.
 */
public final class CommonOptions {
    @Option(names = "--conf", paramLabel = "KEY=VALUE",
            description = "A Hadoop (fs.*, spark.hadoop.*) or Spark (spark.*) setting; repeatable.")
    Map<String, String> conf = new LinkedHashMap<>();

    @Option(names = "--verbose", description = "Show stack traces and more progress detail.")
    boolean verbose;

    @Spec(Spec.Target.MIXEE)
    CommandSpec command;

    private boolean warned;

    /** All settings: the properties file first, then --conf. */
    public Map<String, String> settings() {
        Map<String, String> all = new LinkedHashMap<>();
        String dir = System.getenv("SPARKQUANT_CONF_DIR");
        if (dir != null && !dir.isBlank()) {
            Path file = Path.of(dir, "sparkquant.properties");
            if (Files.isRegularFile(file)) {
                Properties p = new Properties();
                try (InputStream in = Files.newInputStream(file)) {
                    p.load(in);
                } catch (IOException e) {
                    throw SparkQuantException.badInput(file + ": cannot read (" + e.getMessage() + ")");
                }
                p.stringPropertyNames().stream().sorted().forEach(k -> all.put(k, p.getProperty(k).trim()));
            }
        }
        all.putAll(conf);
        if (!warned && command != null) {
            warned = true;
            // keys only, never values (they may hold secrets)
            SparkSessions.settingWarnings(all).forEach(w -> command.commandLine().getErr()
                    .println("sparkquant: warning: " + w));
        }
        return all;
    }

    /**
     * The Hadoop settings among {@link #settings()}, with {@code spark.hadoop.} stripped, over those given to
     * spark-submit ({@code --conf spark.hadoop.*}, {@code spark-defaults.conf}): spark-submit hands them to the driver
     * JVM as system properties, where Spark reads them for the executors, so the driver's own storage must read them
     * too.
     */
    public Map<String, String> hadoopSettings() {
        Map<String, String> submitted = new LinkedHashMap<>();
        Properties system = System.getProperties();
        system.stringPropertyNames().stream().filter(k -> k.startsWith("spark.hadoop.")).sorted()
                .forEach(k -> submitted.put(k, system.getProperty(k)));
        Map<String, String> hadoop = hadoopSettings(submitted);
        hadoop.putAll(hadoopSettings(settings()));
        return hadoop;
    }

    /** The Hadoop settings among any settings: {@code fs.*} as they are, {@code spark.hadoop.*} stripped. */
    static Map<String, String> hadoopSettings(Map<String, String> settings) {
        Map<String, String> hadoop = new LinkedHashMap<>();
        settings.forEach((k, v) -> {
            if (k.startsWith("spark.hadoop.")) {
                hadoop.put(k.substring("spark.hadoop.".length()), v);
            } else if (k.startsWith("fs.")) {
                hadoop.put(k, v);
            }
        });
        return hadoop;
    }

    /** The command's storage; a call that waits (s3a retrying an unreachable endpoint) says so on stderr. */
    public Storage storage() {
        Storage storage = Storage.of(hadoopSettings());
        if (command == null) {
            return storage;
        }
        java.io.PrintWriter err = command.commandLine().getErr();
        return storage.withNotices(line -> {
            err.println("sparkquant: " + line);
            err.flush();
        });
    }
}
