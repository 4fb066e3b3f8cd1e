package org.sparkquant.spark;

import java.util.List;
import java.util.function.Function;
import java.util.function.Predicate;
import java.util.stream.Stream;

import org.sparkquant.model.LinearModule;
import org.sparkquant.nn.DenseLinear;
import org.sparkquant.nn.LayerWeights;

/** The layers of a run as the executors see them: the source's layer with its quantized modules so far. */
final class StagedLayers {
    private StagedLayers() {}

    /**
     * A layer's weights with the given modules replaced by their staged (dequantized) quantization. The executor's
     * cached layer is extended when it holds the same layer with fewer replaced modules (true-sequential groups ask
     * for q,k,v, then also o, ...), so the dense layer and each staged module are read once per layer.
     */
    static LayerWeights weights(QuantizeRun run, int layer, List<LinearModule> replaced) {
        ModelSource source = run.source();
        // the work directory names the run: another run over the same model stages other weights
        String prefix = source.uri() + "@" + run.work().root() + "#" + layer + ":";
        List<String> kinds = replaced.stream().map(LinearModule::key).toList();
        String key = prefix + String.join(",", kinds);
        // the module kinds a cached copy of this layer replaced, from its key
        Function<String, List<String>> replacedIn = cached -> Stream.of(cached.substring(prefix.length()).split(","))
                .filter(k -> !k.isEmpty()).toList();
        // reusable when every module it replaced is replaced here too
        Predicate<String> extendable = cached -> cached.startsWith(prefix)
                && kinds.containsAll(replacedIn.apply(cached));
        return ExecutorCache.layer(key, extendable, (previousKey, previous) -> {
            LayerWeights w = previous != null ? previous : source.open().layerWeights(layer);
            List<String> had = previous != null ? replacedIn.apply(previousKey) : List.of();
            List<LinearModule> todo = replaced.stream().filter(m -> !had.contains(m.key())).toList();
            for (LinearModule m : todo) {
                float[] weight = new float[m.outFeatures() * m.inFeatures()];
                for (ModuleBlocks.Block b : ModuleBlocks.of(m).blocks()) {
                    StagedBlock<?> staged = Staged.readObject(source.storage(), run.work().path(b.stagedPath()));
                    System.arraycopy(staged.dequantized(), 0, weight, b.r0() * m.inFeatures(),
                            b.rows() * m.inFeatures());
                }
                float[] bias = m.bias() ? source.open().store().readFloats(m.biasName()) : null;
                w = w.with(m.key(), DenseLinear.of(weight, m.outFeatures(), m.inFeatures(), bias));
            }
            return w;
        });
    }
}
