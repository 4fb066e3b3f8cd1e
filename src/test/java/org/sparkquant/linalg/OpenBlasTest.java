package org.sparkquant.linalg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

class OpenBlasTest {
    @Test
    void namesTheKernelSetInUse() {
        String kernel = OpenBlas.kernel();
        assertNotEquals("unknown", kernel);
        String forced = System.getenv("OPENBLAS_CORETYPE");
        if (forced != null) {
            assertEquals(forced.toUpperCase(java.util.Locale.ROOT), kernel);
        }
    }

    @Test
    void everyCheckedRoutineIsRightWithTheKernelTheBuildSelects() {
        List<String> bad = OpenBlas.mismatches();
        assertEquals(List.of(), bad, "kernel " + OpenBlas.kernel());
        OpenBlas.verify();
    }
}
