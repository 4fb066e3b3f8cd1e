package org.sparkquant.linalg;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

import java.io.PrintWriter;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.launcher.listeners.TestExecutionSummary;

/**
 * Runs test classes in this JVM with whatever OpenBLAS kernel its environment selects, and prints the kernel and
 * the outcome: {@link KernelMatrixTest} starts it in child JVMs with and without OPENBLAS_CORETYPE.
 */
public final class KernelSuite {
    private KernelSuite() {}

    public static void main(String[] classNames) throws ClassNotFoundException {
        System.out.println("kernel=" + OpenBlas.kernel());
        LauncherDiscoveryRequestBuilder request = LauncherDiscoveryRequestBuilder.request();
        for (String name : classNames) {
            request.selectors(selectClass(Class.forName(name)));
        }
        LauncherDiscoveryRequest built = request.build();
        SummaryGeneratingListener listener = new SummaryGeneratingListener();
        LauncherFactory.create().execute(built, listener);
        TestExecutionSummary summary = listener.getSummary();
        for (TestExecutionSummary.Failure f : summary.getFailures()) {
            String message = String.valueOf(f.getException().getMessage()).lines().findFirst().orElse("");
            System.out.println("failure: " + f.getTestIdentifier().getDisplayName() + ": " + message);
        }
        System.out.println("tests=" + summary.getTestsFoundCount() + " succeeded=" + summary.getTestsSucceededCount()
                + " failed=" + summary.getTotalFailureCount());
        summary.printTo(new PrintWriter(System.err, true));
        System.exit(summary.getTotalFailureCount() == 0 && summary.getTestsFoundCount() > 0 ? 0 : 1);
    }
}
