package org.sparkquant.model;

import java.util.EnumMap;
import java.util.Map;

/**
 * What a quantization run holds in memory, from shapes alone: the bound {@code inspect} states and the pipeline is
 * held to. Executors hold one decoder layer (fp32), the hidden states of their calibration partitions (the layer's
 * input and output), one Hessian accumulator (fp64) and one inverse Cholesky factor; the driver holds metadata and one
 * Hessian tile at a time. In a mixture-of-experts layer a task accumulates the experts' Hessians in passes of at most
 * {@link #MOE_PASS_BYTES} ({@code moePassBytes}: the largest pass, 0 for a dense model) instead of one Hessian.
 *
 * @param samplesPerPartition calibration sequences in one partition of hidden states
 * @param workBytes           the most a run's work directory ({@code _work/}) holds: the staged codes of every
 *                            quantized weight (one byte each, plus a scale, exact scale and zero per group), one
 *                            layer's Hessians (fp64) and GPTQ factors (rows of U per batch of 128 columns), the hidden
 *                            states of two layer boundaries (fp32, with their tokens), and 1 MiB for small records
 */
public record MemoryPlan(
        int samples,
        int seqLen,
        int partitions,
        int samplesPerPartition,
        long largestLayerFp32Bytes,
        long hiddenStateBytesPerSample,
        Map<LinearModule.Input, Long> hessianBytes,
        long activationBytesPerSample,
        long executorBytes,
        long driverBytes,
        long workBytes,
        long moePassBytes) {

    /** Spark records of Hessian partials are cut into tiles of at most this many bytes. */
    public static final long HESSIAN_TILE_BYTES = 256L << 20;
    /**
     * Mixture-of-experts layers: the Hessian accumulators one pass over a partition holds at most (the experts' are
     * accumulated in as many passes as this needs; a single Hessian larger than this is one pass of its own).
     */
    public static final long MOE_PASS_BYTES = 1L << 30;
    /** Calibration sequences per partition when the user does not choose: a function of the data, not the cluster. */
    public static final int DEFAULT_SAMPLES_PER_PARTITION = 8;
    /** Driver overhead for metadata, Spark and the JVM itself. */
    public static final long DRIVER_BASE_BYTES = 256L << 20;

    public static int partitionsFor(int samples, int samplesPerPartition) {
        return Math.max(1, (samples + samplesPerPartition - 1) / samplesPerPartition);
    }

    /** The plan of a run with the default settings: group size 128, fp32 solver. */
    public static MemoryPlan of(ModelInventory inventory, int samples, int seqLen, int samplesPerPartition) {
        return of(inventory, samples, seqLen, samplesPerPartition, 128, 4);
    }

    /**
     * The plan of a run with {@code groupSize} columns per scale (−1: one per row) and a GPTQ factor of
     * {@code factorBytes} per element (4 in fp32, 8 in fp64).
     */
    public static MemoryPlan of(ModelInventory inventory, int samples, int seqLen, int samplesPerPartition,
            int groupSize, int factorBytes) {
        ModelConfig c = inventory.config();
        long largestLayer = 0;
        for (int i = 0; i < c.numLayers(); i++) {
            largestLayer = Math.max(largestLayer, inventory.layerParameters(i) * 4L);
        }
        long hiddenPerSample = (long) seqLen * c.hiddenSize() * 4L;
        Map<LinearModule.Input, Long> hessians = new EnumMap<>(LinearModule.Input.class);
        long largestHessian = 0;
        for (Map.Entry<LinearModule.Input, Integer> e : inventory.inputWidths().entrySet()) {
            long bytes = (long) e.getValue() * e.getValue() * 8L;
            hessians.put(e.getKey(), bytes);
            largestHessian = Math.max(largestHessian, bytes);
        }
        // Working set of one sequence through a layer: q, k, v, attention output, gate, up, their product, and one
        // head's [seq, seq] scores.
        long activations = (long) seqLen * 4L * (3L * c.qDim() + 2L * c.kvDim() + 3L * c.intermediateSize())
                + (long) seqLen * seqLen * 4L;
        int perPartition = Math.max(1, Math.min(samplesPerPartition, samples));
        int partitions = partitionsFor(samples, perPartition);
        long largestWidth = inventory.inputWidths().values().stream().mapToLong(Integer::longValue).max().orElse(0);
        long factor = largestWidth * largestWidth * 4L;
        long moePass = moePassBytes(inventory);
        long executor = largestLayer + 2L * perPartition * hiddenPerSample + Math.max(largestHessian, moePass) + factor
                + activations;
        long driver = DRIVER_BASE_BYTES + Math.min(largestHessian, HESSIAN_TILE_BYTES);
        long codes = 0;
        for (LinearModule m : inventory.layers().stream().flatMap(l -> l.stream()).toList()) {
            long groups = groupSize == -1 ? 1 : (m.inFeatures() + groupSize - 1) / groupSize;
            codes += m.parameters() + (long) m.outFeatures() * (groups * 16L + 8L); // scale, exact scale, zero; loss
        }
        // one layer's Hessians and factors: each distinct (input, expert) of the layer that has the most
        long hessianTotal = 0;
        long factors = 0;
        for (java.util.List<LinearModule> layer : inventory.layers()) {
            Map<String, Integer> distinct = new java.util.HashMap<>();
            for (LinearModule m : layer) {
                distinct.put(m.hessianKey(), m.inFeatures());
                if (m.routed()) {
                    distinct.put(LinearModule.hessianKey(m.layer(), LinearModule.Input.MLP_IN, -1), m.inFeatures());
                }
            }
            long h = 0;
            long f = 0;
            for (int width : distinct.values()) {
                h += (long) width * width * 8L;
                for (long i1 = 0; i1 < width; i1 += 128) {
                    f += Math.min(128, width - i1) * (width - i1) * factorBytes;
                }
            }
            hessianTotal = Math.max(hessianTotal, h);
            factors = Math.max(factors, f);
        }
        long boundary = (long) samples * (hiddenPerSample + seqLen * 4L);
        long work = codes + hessianTotal + factors + 2L * boundary + (1L << 20);
        return new MemoryPlan(samples, seqLen, partitions, perPartition, largestLayer, hiddenPerSample, hessians,
                activations, executor, driver, work, moePass);
    }

    /**
     * The largest pass of Hessian accumulators (two longs per entry) a task holds for a sparse layer's routed experts:
     * their gate/up Hessians (with the layer's all-token one) or their down Hessians, packed in order into passes of at
     * most {@link #MOE_PASS_BYTES}; 0 for a dense model.
     */
    public static long moePassBytes(ModelInventory inventory) {
        long largest = 0;
        for (java.util.List<LinearModule> layer : inventory.layers()) {
            for (LinearModule.Input input : java.util.List.of(LinearModule.Input.MLP_IN, LinearModule.Input.DOWN_IN)) {
                java.util.List<Long> sizes = new java.util.ArrayList<>();
                java.util.Set<String> seen = new java.util.HashSet<>();
                for (LinearModule m : layer) {
                    if (m.routed() && m.input() == input && seen.add(m.hessianKey())) {
                        sizes.add(16L * m.inFeatures() * m.inFeatures());
                    }
                }
                if (sizes.isEmpty()) {
                    continue;
                }
                if (input == LinearModule.Input.MLP_IN) {
                    sizes.add(0, 16L * inventory.config().hiddenSize() * inventory.config().hiddenSize());
                }
                long pass = 0;
                for (long b : sizes) {
                    if (pass > 0 && pass + b > MOE_PASS_BYTES) {
                        largest = Math.max(largest, pass);
                        pass = 0;
                    }
                    pass += b;
                }
                largest = Math.max(largest, pass);
            }
        }
        return largest;
    }
}
