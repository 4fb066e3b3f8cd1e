package org.sparkquant.spark;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

import org.sparkquant.model.LinearModule;

/**
 * How a module's output channels are cut into quantization tasks: a function of its shape alone, never of the
 * cluster, so every run stages the same blocks. A block is about {@link #TARGET_BYTES} of fp32 weights.
 */
record ModuleBlocks(LinearModule module, int rowsPerBlock) implements Serializable {
    static final long TARGET_BYTES = 16L << 20;

    static ModuleBlocks of(LinearModule module) {
        long rowBytes = 4L * module.inFeatures();
        int rows = (int) Math.max(16, Math.min(module.outFeatures(), TARGET_BYTES / rowBytes));
        rows = Integer.highestOneBit(rows);
        return new ModuleBlocks(module, Math.min(rows, module.outFeatures()));
    }

    List<Block> blocks() {
        List<Block> out = new ArrayList<>();
        for (int r0 = 0; r0 < module.outFeatures(); r0 += rowsPerBlock) {
            out.add(new Block(module, r0, Math.min(module.outFeatures(), r0 + rowsPerBlock)));
        }
        return out;
    }

    /** Output channels [r0, r1) of a module. */
    record Block(LinearModule module, int r0, int r1) implements Serializable {
        int rows() {
            return r1 - r0;
        }

        String stagedPath() {
            return "layers/" + module.layer() + "/" + module.key() + "/rows-" + String.format("%06d", r0) + ".bin";
        }
    }
}
