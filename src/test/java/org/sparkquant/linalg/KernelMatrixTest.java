package org.sparkquant.linalg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The GPTQ tests in child JVMs whose OpenBLAS kernel is not the one surefire selects: with no OPENBLAS_CORETYPE
 * (the way a user starts a JVM without the launchers), and, where the CPU can run them, with the AVX-512 kernel sets
 * forced. The fp64 golden cases failed with the SkylakeX kernels before {@link UpperCholesky}; with CooperLake, whose
 * dgemm is wrong, the start-up check must stop the run with its one-line fix instead.
 */
class KernelMatrixTest {
    /** The fp64 and fp32 golden cases, the solver, the factorization and the BLAS check. */
    private static final List<String> SUITE = List.of("org.sparkquant.linalg.OpenBlasTest",
            "org.sparkquant.linalg.UpperCholeskyTest", "org.sparkquant.gptq.GptqGoldenTest",
            "org.sparkquant.gptq.GptqLoopTest");

    /** Kernel sets of this OpenBLAS build whose dgemm is wrong: the check must refuse them. */
    private static final Set<String> BROKEN = Set.of("COOPERLAKE");

    record Run(int exit, String out) {
        String kernel() {
            Matcher m = Pattern.compile("^kernel=(\\S+)$", Pattern.MULTILINE).matcher(out);
            assertTrue(m.find(), "no kernel line in:\n" + out);
            return m.group(1);
        }
    }

    @Test
    void withoutOpenblasCoretypeTheGoldenCasesPassOrTheCheckNamesTheFix() throws Exception {
        Run run = suite(null);
        if (BROKEN.contains(run.kernel())) {
            assertNotEquals(0, run.exit(), run.out());
            assertTrue(run.out().contains("start this JVM with OPENBLAS_CORETYPE=Haswell"), run.out());
        } else {
            assertEquals(0, run.exit(), "kernel " + run.kernel() + ":\n" + run.out());
        }
    }

    @Test
    void skylakeXKernelsGiveTheGoldenResults() throws Exception {
        assumeTrue(cpuHas("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"),
                "this CPU cannot run OpenBLAS's SkylakeX kernels (no AVX-512)");
        Run run = suite("SkylakeX");
        assertEquals("SKYLAKEX", run.kernel());
        assertEquals(0, run.exit(), run.out());
    }

    @Test
    void cooperLakeKernelsAreRefusedWithTheFix() throws Exception {
        assumeTrue(cpuHas("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"),
                "this CPU cannot run OpenBLAS's CooperLake kernels (no AVX-512 BF16)");
        Run run = suite("CooperLake");
        assertEquals("COOPERLAKE", run.kernel());
        assertNotEquals(0, run.exit(), run.out());
        assertTrue(run.out().contains("OpenBLAS kernel COOPERLAKE (OPENBLAS_CORETYPE=CooperLake) miscomputes dgemm"),
                run.out());
        assertTrue(run.out().contains("start this JVM with OPENBLAS_CORETYPE=Haswell (for executors: "
                + "spark.executorEnv.OPENBLAS_CORETYPE=Haswell)"), run.out());
    }

    private static boolean cpuHas(String... flags) throws IOException {
        Path cpuinfo = Path.of("/proc/cpuinfo");
        if (!Files.isReadable(cpuinfo)) {
            return false;
        }
        String line = Files.readAllLines(cpuinfo).stream().filter(l -> l.startsWith("flags")).findFirst().orElse("");
        Set<String> have = Set.of(line.replaceFirst("^flags\\s*:", "").trim().split("\\s+"));
        for (String f : flags) {
            if (!have.contains(f)) {
                return false;
            }
        }
        return true;
    }

    /** Runs {@link #SUITE} in a child JVM like this one, with OPENBLAS_CORETYPE unset (null) or set. */
    private static Run suite(String coretype) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (!arg.startsWith("-agentlib") && !arg.startsWith("-javaagent") && !arg.startsWith("-XX:ErrorFile")) {
                cmd.add(arg);
            }
        }
        for (String p : new String[] {"sparkquant.basedir", "sparkquant.shared"}) {
            if (System.getProperty(p) != null) {
                cmd.add("-D" + p + "=" + System.getProperty(p));
            }
        }
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(KernelSuite.class.getName());
        cmd.addAll(SUITE);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        if (coretype == null) {
            pb.environment().remove("OPENBLAS_CORETYPE");
        } else {
            pb.environment().put("OPENBLAS_CORETYPE", coretype);
        }
        Process p = pb.start();
        p.getOutputStream().close();
        byte[] out = p.getInputStream().readAllBytes();
        assertTrue(p.waitFor(10, TimeUnit.MINUTES), "child JVM did not end");
        String text = new String(out, StandardCharsets.UTF_8);
        // the kernel line is first, the summary last; what lies between can be long
        return new Run(p.exitValue(), text.length() <= 20000 ? text
                : text.substring(0, 2000) + "\n[...]\n" + text.substring(text.length() - 18000));
    }
}
