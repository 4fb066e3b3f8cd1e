package org.sparkquant.cli;

import java.io.PrintWriter;
import java.util.Arrays;

import org.sparkquant.SparkQuantException;
import org.sparkquant.spark.FaultHook;
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
                VerifyCommand.class, ReportCommand.class,
                CommandLine.HelpCommand.class})
public final class SparkQuant implements Runnable {
    /** What a user can do about our bug. */
    static final String REPORT_HINT = " (a bug in sparkquant: please report it with the output of --verbose)";

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
        return execute(FaultHook.NONE, out, err, args);
    }

    /** {@link #execute(PrintWriter, PrintWriter, String...)} with failures injected at a run's named points (tests). */
    public static int execute(FaultHook faults, PrintWriter out, PrintWriter err, String... args) {
        boolean verbose = Arrays.asList(args).contains("--verbose");
        if (verbose) {
            // read by conf/log4j2.properties when logging starts (with Spark): full traces, retried task attempts
            System.setProperty("sparkquant.stacktraces", "full");
            System.setProperty("sparkquant.tasklog", "warn");
        }
        CommandLine.IFactory factory = new CommandLine.IFactory() {
            @Override
            public <K> K create(Class<K> type) throws Exception {
                return type == QuantizeCommand.class ? type.cast(new QuantizeCommand(faults))
                        : CommandLine.defaultFactory().create(type);
            }
        };
        CommandLine cli = new CommandLine(new SparkQuant(), factory);
        // options from a --config job file come first; the same option on the command line overrides them
        cli.setOverwrittenOptionsAllowed(true);
        cli.setOut(out);
        cli.setErr(err);
        cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            SparkQuantException failure = rootFailure(e);
            if (failure != null) {
                err.println("sparkquant: " + (failure.kind() == SparkQuantException.Kind.INTERNAL
                        ? "internal error: " + failure.getMessage() + REPORT_HINT : "error: " + failure.getMessage()));
            } else if (org.sparkquant.io.Storage.unreachable(e) != null) {
                // a storage call outside Storage (a stream's close, Spark's own reads): the environment's failure
                err.println("sparkquant: error: the storage did not answer: " + oneLine(
                        org.sparkquant.io.Storage.unreachable(e)) + "; check fs.s3a.endpoint and the network");
                failure = SparkQuantException.environment("storage");
            } else {
                err.println("sparkquant: internal error: " + oneLine(e) + REPORT_HINT);
            }
            if (verbose) {
                e.printStackTrace(err);
            }
            err.flush();
            return failure != null ? failure.exitCode() : 1;
        });
        // a usage error is one line too, naming the option, with picocli's suggestion and where help is
        cli.setParameterExceptionHandler((e, arguments) -> {
            err.println("sparkquant: error: " + usageLine(e));
            if (verbose) {
                e.printStackTrace(err);
            }
            err.flush();
            return CommandLine.ExitCode.USAGE;
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

    private static String oneLine(Throwable e) {
        return e.getClass().getName() + ": " + String.valueOf(e.getMessage()).lines().findFirst().orElse("");
    }

    /** picocli's message on one line, its suggestions as "did you mean", and the command's --help. */
    static String usageLine(CommandLine.ParameterException e) {
        StringBuilder line = new StringBuilder(String.join("; ", e.getMessage().strip().lines().toList()));
        if (e instanceof CommandLine.UnmatchedArgumentException u && !u.getSuggestions().isEmpty()) {
            line.append("; did you mean ").append(String.join(" or ", u.getSuggestions())).append('?');
        }
        CommandLine command = e.getCommandLine();
        return line.append(" (see ").append(command == null ? "sparkquant"
                : command.getCommandSpec().qualifiedName()).append(" --help)").toString();
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
