package org.sparkquant.cli;

import java.io.PrintWriter;
import java.util.Arrays;

import org.sparkquant.SparkQuantException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The command line: {@code sparkquant <command> [options]}. Exit codes: 0 success, 2 bad input or usage, 1 internal
 * error. Errors are one line on stderr; {@code --verbose} adds the stack trace.
 */
@Command(name = "sparkquant",
        mixinStandardHelpOptions = true,
        versionProvider = Version.class,
        description = "Quantize large language models with GPTQ on Apache Spark.",
        subcommands = {InspectCommand.class, QuantizeCommand.class, EvalCommand.class, GenerateCommand.class,
                VerifyCommand.class,
                CommandLine.HelpCommand.class})
public final class SparkQuant implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "a command is required");
    }

    public static void main(String[] args) {
        System.exit(execute(args));
    }

    /** Runs the CLI and returns its exit code (tests call this instead of main). */
    public static int execute(String... args) {
        return execute(new PrintWriter(System.out, true), new PrintWriter(System.err, true), args);
    }

    public static int execute(PrintWriter out, PrintWriter err, String... args) {
        boolean verbose = Arrays.asList(args).contains("--verbose");
        CommandLine cli = new CommandLine(new SparkQuant());
        // options from a --config job file come first; the same option on the command line overrides them
        cli.setOverwrittenOptionsAllowed(true);
        cli.setOut(out);
        cli.setErr(err);
        cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            SparkQuantException failure = rootFailure(e);
            if (failure != null) {
                err.println("sparkquant: " + (failure.kind() == SparkQuantException.Kind.BAD_INPUT ? "error: " : "internal error: ")
                        + failure.getMessage());
            } else {
                err.println("sparkquant: internal error: " + e + (verbose ? "" : " (--verbose shows the stack trace)"));
            }
            if (verbose) {
                e.printStackTrace(err);
            }
            err.flush();
            return failure != null ? failure.exitCode() : 1;
        });
        String[] expanded;
        try {
            expanded = JobFile.expand(args);
        } catch (SparkQuantException e) {
            err.println("sparkquant: error: " + e.getMessage());
            err.flush();
            return e.exitCode();
        }
        return cli.execute(expanded);
    }

    /** A SparkQuantException anywhere in the cause chain (Spark wraps executor failures). */
    static SparkQuantException rootFailure(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof SparkQuantException s) {
                return s;
            }
            if (t.getCause() == t) {
                break;
            }
        }
        return null;
    }
}
