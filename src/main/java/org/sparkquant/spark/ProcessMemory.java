package org.sparkquant.spark;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import org.apache.spark.SparkEnv;

/**
 * What a JVM of the run really held: its peak resident set (Linux {@code VmHWM}), which counts the heap, ND4J's
 * off-heap buffers and OpenBLAS alike, so that the report can set the memory plan against it.
 */
final class ProcessMemory {
    private ProcessMemory() {}

    /** The process's peak resident memory in bytes since it started, or -1 where the OS does not say. */
    static long peakRssBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    String[] parts = line.substring(6).trim().split("\\s+");
                    return Long.parseLong(parts[0]) * 1024L; // reported in kB
                }
            }
        } catch (IOException | RuntimeException e) {
            // not Linux, or /proc hidden: the report shows no measurement
        }
        return -1;
    }

    /** The Spark executor id of this JVM ("driver" in local mode), or "local" outside Spark. */
    static String executorId() {
        SparkEnv env = SparkEnv.get();
        return env == null ? "local" : env.executorId();
    }
}
