package org.sparkquant.cli;

import java.io.PrintWriter;
import java.util.Locale;
import java.util.concurrent.Callable;

import org.sparkquant.SparkQuantException;
import org.sparkquant.io.DType;
import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.model.SyntheticModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code sparkquant generate}: a llama (or mixtral / qwen MoE) checkpoint with seeded random weights, for demos and
 * cluster smoke tests.
 */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Write a llama checkpoint with seeded random weights and a byte-fallback tokenizer: the demo "
                + "model of the README, or real shapes (llama3-8b) to test a cluster's setup and scale."})
public final class GenerateCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Option(names = "--output", required = true, paramLabel = "URI", description = "Directory to write.")
    String output;

    @Option(names = "--preset", defaultValue = "tiny",
            description = "Shape: tiny (128 hidden, 4 layers), small (256 hidden), llama3-8b; mixture of experts: "
                    + "tiny-mixtral, tiny-qwen2-moe, tiny-qwen3-moe, qwen3-30b-a3b, mixtral-8x7b "
                    + "(default: ${DEFAULT-VALUE}).")
    String preset;

    @Option(names = "--layers", defaultValue = "0", description = "Override the preset's number of layers.")
    int layers;

    @Option(names = "--dtype", defaultValue = "BF16", description = "F32, F16 or BF16 (default: ${DEFAULT-VALUE}).")
    String dtype;

    @Option(names = "--seed", defaultValue = "0", description = "Random seed (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--max-shard-size", defaultValue = "2GiB",
            description = "Largest safetensors shard, e.g. 500MiB, 5GB (default: ${DEFAULT-VALUE}).")
    String maxShardSize;

    @Option(names = "--overwrite", description = "Replace an existing directory.")
    boolean overwrite;

    @Override
    public Integer call() {
        Storage storage = common.storage();
        if (storage.exists(output)) {
            if (!overwrite) {
                throw SparkQuantException.badInput(output + " already exists (use --overwrite to replace it)");
            }
            storage.delete(output);
        }
        DType type = DType.parse(dtype.toUpperCase(Locale.ROOT))
                .orElseThrow(() -> SparkQuantException.badInput("unknown --dtype " + dtype));
        ModelConfig config = SyntheticModel.write(storage, output, SyntheticModel.Preset.parse(preset), layers, type,
                seed, Sizes.parse(maxShardSize, "--max-shard-size"));
        PrintWriter out = spec.commandLine().getOut();
        out.printf("wrote %s: %s, %d layers, hidden %d, %,d parameters (%s)%n", output, config.modelType(),
                config.numLayers(), config.hiddenSize(), ModelInventory.of(config).parameterCount(), type);
        return 0;
    }
}
