package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.sparkquant.model.LinearModule.Input;
import org.sparkquant.model.MemoryPlan;

/** How a layer's Hessians are cut into passes over the partitions: by shape alone, in order, within the bound. */
class LayerHessiansTest {
    @Test
    void expertsHessiansArePackedIntoPassesOfBoundedBytes() {
        // Qwen3-30B-A3B's gate/up: the all-token input and 128 experts, 2048 wide, 64 MiB of accumulators each
        List<LayerHessians.Key> keys = new ArrayList<>();
        keys.add(new LayerHessians.Key(Input.MLP_IN, -1, 2048));
        for (int e = 0; e < 128; e++) {
            keys.add(new LayerHessians.Key(Input.MLP_IN, e, 2048));
        }
        List<List<LayerHessians.Key>> passes = LayerHessians.passes(keys);
        assertEquals(9, passes.size());
        List<LayerHessians.Key> flat = new ArrayList<>();
        for (List<LayerHessians.Key> pass : passes) {
            long bytes = pass.stream().mapToLong(LayerHessians.Key::accumulatorBytes).sum();
            assertEquals(true, bytes <= MemoryPlan.MOE_PASS_BYTES, bytes + " bytes in one pass");
            flat.addAll(pass);
        }
        assertEquals(keys, flat, "every key once, in order");
        assertEquals(16, passes.get(0).size());
        assertEquals(1, passes.get(8).size());

        // a Hessian wider than the bound is a pass of its own; a dense layer's inputs share one pass
        LayerHessians.Key huge = new LayerHessians.Key(Input.DOWN_IN, -1, 28672);
        assertEquals(List.of(List.of(keys.get(0)), List.of(huge), List.of(keys.get(1))),
                LayerHessians.passes(List.of(keys.get(0), huge, keys.get(1))));
        assertEquals(1, LayerHessians.passes(List.of(new LayerHessians.Key(Input.ATTN_IN, -1, 4096))).size());
    }

    @Test
    void keysNameTheExpertInTheirFiles() {
        LayerHessians.Key expert = new LayerHessians.Key(Input.DOWN_IN, 17, 768);
        assertEquals("DOWN_IN-e17", expert.file());
        assertEquals("3/DOWN_IN/17", expert.id(3));
        assertEquals("layers/3/hessian-DOWN_IN-e17.bin", LayerHessians.hessianPath(3, expert));
        LayerHessians.Key dense = new LayerHessians.Key(Input.MLP_IN, -1, 2048);
        assertEquals("layers/3/summary-MLP_IN.bin", LayerHessians.summaryPath(3, dense));
        assertEquals("3/MLP_IN", dense.id(3));
    }
}
