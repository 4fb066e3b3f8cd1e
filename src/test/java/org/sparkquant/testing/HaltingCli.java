package org.sparkquant.testing;

import java.io.PrintWriter;
import java.util.Arrays;

import org.sparkquant.cli.SparkQuant;
import org.sparkquant.spark.FaultHook;

/**
 * The CLI as a child JVM's main class, for crash tests: {@code HaltingCli K args...} runs {@code sparkquant args...}
 * and halts the JVM ({@link Runtime#halt}: no shutdown hooks, no finally blocks, no lease given back, as a
 * {@code kill -9} or a lost node) just before the driver's state change number K ({@link FaultHook.Point#WORK_STATE},
 * counted from 0). The hook is a programmatic test seam; no user-visible option reaches it.
 */
public final class HaltingCli {
    /** The exit code of a halted child. */
    public static final int HALTED = 86;

    private HaltingCli() {}

    public static void main(String[] args) {
        int k = Integer.parseInt(args[0]);
        FaultHook halt = (point, index, attempt) -> {
            if (point == FaultHook.Point.WORK_STATE && index == k) {
                System.err.println("halting before state change " + k);
                System.err.flush();
                Runtime.getRuntime().halt(HALTED);
            }
        };
        System.exit(SparkQuant.execute(halt, new PrintWriter(System.out, true), new PrintWriter(System.err, true),
                Arrays.copyOfRange(args, 1, args.length)));
    }
}
