package org.sparkquant.deploy;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.sparkquant.testing.TestPython;

/**
 * The Airflow helper's Python tests ({@code deploy/airflow/tests}), so that CI runs them. The DAG's own import test
 * among them skips unless Airflow is installed, which it is not on this machine.
 */
class DeployPythonTest {
    @Test
    void airflowHelperTestsPass() {
        Path python = TestPython.require("pytest");
        String out = TestPython.check(python, List.of("-B", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                "deploy/airflow/tests"), 300);
        System.out.println(out);
        assertTrue(out.contains(" passed"), out);
    }
}
