package org.sparkquant.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;

/** Where the repository and the read-only {@code ../shared} material are; shared cases skip when it is absent. */
public final class TestPaths {
    private TestPaths() {}

    public static Path repository() {
        return Path.of(System.getProperty("sparkquant.basedir", System.getProperty("user.dir"))).toAbsolutePath();
    }

    public static Path fixtures(String area) {
        return repository().resolve("src/test/resources/fixtures").resolve(area);
    }

    /** A path below {@code ../shared}; skips the calling test when it does not exist. */
    public static Path shared(String relative) {
        String base = System.getProperty("sparkquant.shared", repository().resolve("../shared").toString());
        Path p = Path.of(base).resolve(relative).normalize();
        assumeTrue(Files.exists(p), "../shared not present: " + p);
        return p;
    }
}
