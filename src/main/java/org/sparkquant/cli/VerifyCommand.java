package org.sparkquant.cli;

import java.io.PrintWriter;
import java.util.List;
import java.util.concurrent.Callable;

import org.sparkquant.SparkQuantException;
import org.sparkquant.io.OutputManifest;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code sparkquant verify}: recomputes the checksums of a finished output against its {@code _SUCCESS} manifest. */
@Command(name = "verify", mixinStandardHelpOptions = true,
        description = {"Check a finished output: every file listed in its _SUCCESS manifest exists with the recorded "
                + "size and SHA-256, and no unlisted file was added. Exit 0 when all match, 2 otherwise."})
public final class VerifyCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Option(names = "--model", required = true, paramLabel = "URI", description = "Output directory to verify.")
    String model;

    @Override
    public Integer call() {
        List<String> problems = OutputManifest.verify(common.storage(), model);
        PrintWriter out = spec.commandLine().getOut();
        if (!problems.isEmpty()) {
            PrintWriter err = spec.commandLine().getErr();
            problems.forEach(p -> err.println("sparkquant: " + p));
            throw SparkQuantException.badInput(model + ": " + problems.size() + " file(s) do not match the manifest");
        }
        out.println("verified " + model + ": all files match " + OutputManifest.FILE);
        return 0;
    }
}
