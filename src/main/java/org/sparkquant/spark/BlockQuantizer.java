package org.sparkquant.spark;

import java.util.ArrayList;
import java.util.List;

import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaSparkContext;
import org.sparkquant.SparkQuantException;
import org.sparkquant.gptq.Gptq;
import org.sparkquant.gptq.GptqPreparation;
import org.sparkquant.gptq.Hessian;
import org.sparkquant.gptq.QuantizedBlock;
import org.sparkquant.io.Storage;
import org.sparkquant.linalg.OpenBlas;
import org.sparkquant.model.LinearModule;
import org.sparkquant.model.LinearModule.Input;
import scala.Tuple2;

/**
 * The quantize step of a layer group: fixed blocks of output channels ({@link ModuleBlocks}), one Spark task each,
 * coded by the output target with GPTQ (or RTN) from the group's staged Hessian and preparation, measured against
 * RTN, and staged once under {@code _work/}. A block already staged (a retried task, a resumed run) is read back.
 */
final class BlockQuantizer {
    private BlockQuantizer() {}

    static List<ModuleBlocks.Block> blocksOf(List<LinearModule> modules) {
        List<ModuleBlocks.Block> out = new ArrayList<>();
        for (LinearModule m : modules) {
            out.addAll(ModuleBlocks.of(m).blocks());
        }
        return out;
    }

    /** Quantizes {@code blocks}, one Spark task each; their statistics in the blocks' order. */
    static List<BlockStats> quantize(JavaSparkContext jsc, QuantizeRun run,
            List<ModuleBlocks.Block> blocks) {
        return quantize(jsc, run, blocks, ExpertRules.Plan.NONE);
    }

    /**
     * Quantizes {@code blocks} with the Hessians {@code plan} names for routed experts below the token threshold
     * (another Hessian, or round-to-nearest).
     */
    static List<BlockStats> quantize(JavaSparkContext jsc, QuantizeRun run,
            List<ModuleBlocks.Block> blocks, ExpertRules.Plan plan) {
        if (blocks.isEmpty()) {
            return List.of();
        }
        List<Tuple2<Integer, ModuleBlocks.Block>> indexed = new ArrayList<>();
        for (int i = 0; i < blocks.size(); i++) {
            indexed.add(new Tuple2<>(i, blocks.get(i)));
        }
        return jsc.parallelize(indexed, blocks.size())
                .map(b -> quantizeBlock(run, b._1(), b._2(), plan))
                .collect();
    }

    /**
     * On an executor: one block of output channels into the target's format, with GPTQ (or RTN) and both methods'
     * Hessian-weighted errors, staged once under {@code _work/}; a block already staged is only read back.
     */
    private static BlockStats quantizeBlock(QuantizeRun run, int index, ModuleBlocks.Block block,
            ExpertRules.Plan plan) {
        Storage storage = run.storage();
        WorkDir work = run.work();
        if (work.exists(block.stagedPath())) {
            StagedBlock<?> staged = Staged.readObject(storage, work.path(block.stagedPath()));
            return staged.stats();
        }
        LinearModule m = block.module();
        float[] rows = run.source().open().store().readRows(m.weight(), block.r0(), block.r1());
        try {
            return quantizeBlock(run, index, block, rows, plan);
        } catch (SparkQuantException e) {
            if (e.kind() != SparkQuantException.Kind.BAD_INPUT) {
                throw e;
            }
            // name what the user can find: the tensor, its layer and the model (row numbers count from r0)
            throw SparkQuantException.badInput(m.weight() + " (layer " + m.layer() + ", rows " + block.r0() + "-"
                    + (block.r1() - 1) + ") in " + run.job().model() + ": " + e.getMessage(), e);
        }
    }

    private static BlockStats quantizeBlock(QuantizeRun run, int index, ModuleBlocks.Block block, float[] rows,
            ExpertRules.Plan plan) {
        Storage storage = run.storage();
        WorkDir work = run.work();
        LinearModule m = block.module();
        long t0 = System.nanoTime();
        OutputTarget target = run.target();
        QuantizedBlock codes;
        double hessianError = Double.NaN;
        double rtnError = Double.NaN;
        if (run.job().layerwise()) {
            int layer = m.layer();
            Input input = m.input();
            LayerHessians.Key key = plan.hessianOf(m);
            boolean rtnOnly = plan.rtn(m);
            String hessianPath = work.path(LayerHessians.hessianPath(layer, key));
            // an expert no token reached has no Hessian at all (only round-to-nearest can quantize it)
            Hessian h = rtnOnly && !work.exists(LayerHessians.hessianPath(layer, key)) ? null
                    : ExecutorCache.slot("hessian:" + input, hessianPath, () -> Staged.readObject(storage, hessianPath));
            QuantizedBlock rtn = target.rtn(rows, block, rtnOnly ? null : h);
            if (run.job().method() == QuantizeJob.Method.GPTQ && !rtnOnly) {
                String prepPath = work.path(LayerHessians.prepPath(layer, key));
                GptqPreparation prep = ExecutorCache.slot("prep:" + input, prepPath,
                        () -> Staged.readObject(storage, prepPath));
                codes = target.gptq(rows, block, h, prep);
                rtnError = sum(Gptq.hessianError(h, rows, rtn.dequantized(), block.rows()));
            } else {
                codes = rtn;
            }
            if (h != null) {
                hessianError = sum(Gptq.hessianError(h, rows, codes.dequantized(), block.rows()));
            }
            if (codes == rtn) {
                rtnError = hessianError;
            }
        } else {
            codes = target.rtn(rows, block, null);
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        TaskContext task = TaskContext.get();
        run.faults().at(FaultHook.Point.BLOCK_QUANTIZED, index, task == null ? 0 : task.attemptNumber());
        // GPTQ's objective; NaN for round-to-nearest, whose losses are NaN
        double loss = sum(codes.losses());
        BlockStats stats = new BlockStats(m.name(), block.r0(), block.r1(), loss, hessianError, rtnError, seconds,
                OpenBlas.kernel(), ProcessMemory.executorId(), ProcessMemory.peakRssBytes());
        work.writeOnce(block.stagedPath(), Staged.object(new StagedBlock<>(codes, stats)));
        return stats;
    }

    private static double sum(double[] values) {
        double s = 0;
        for (double v : values) {
            s += v;
        }
        return s;
    }
}
