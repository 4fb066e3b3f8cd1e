package org.sparkquant.cli;

import java.io.PrintWriter;
import java.util.List;
import java.util.concurrent.Callable;

import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gguf.GgufReader;
import org.sparkquant.io.OutputManifest;
import org.sparkquant.io.Storage;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code sparkquant verify}: recomputes the checksums of a finished output against its {@code _SUCCESS} manifest, or
 * of a GGUF file against its {@code .sha256}.
 */
@Command(name = "verify", mixinStandardHelpOptions = true,
        description = {"Check a finished output: every file listed in its _SUCCESS manifest exists with the recorded "
                + "size and SHA-256, and no unlisted file was added; for a GGUF file, its SHA-256 against FILE.sha256 "
                + "and its header. Exit 0 when all match, 2 otherwise."})
public final class VerifyCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Option(names = "--model", required = true, paramLabel = "URI",
            description = "Output directory or GGUF file to verify.")
    String model;

    @Override
    public Integer call() {
        Storage storage = common.storage();
        boolean file = storage.exists(model) && !storage.isDirectory(model);
        List<String> problems = file ? OutputManifest.verifyFile(storage, model)
                : OutputManifest.verify(storage, model);
        if (file && problems.isEmpty()) {
            GgufReader.open(storage, model).close(); // header, tensor table and data bounds
        }
        PrintWriter out = spec.commandLine().getOut();
        if (!problems.isEmpty()) {
            PrintWriter err = spec.commandLine().getErr();
            problems.forEach(p -> err.println("sparkquant: " + p));
            throw SparkQuantException.badInput(model + ": " + problems.size() + " file(s) do not match the manifest");
        }
        out.println("verified " + model + (file ? ": matches its " + OutputManifest.FILE_CHECKSUM_SUFFIX
                : ": all files match " + OutputManifest.FILE));
        return 0;
    }
}
