package org.sparkquant.testing;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

/** Compares output directories file by file. */
public final class OutputFiles {
    private OutputFiles() {}

    /** Relative paths of the files under {@code dir}, sorted, without the excluded names. */
    public static List<String> list(Path dir, Set<String> excluded) {
        try (Stream<Path> files = Files.walk(dir)) {
            return files.filter(Files::isRegularFile)
                    .map(p -> dir.relativize(p).toString())
                    .filter(p -> !excluded.contains(p))
                    .sorted()
                    .toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Every file of {@code a} equals the same file of {@code b}, byte for byte, and no file is missing. */
    public static void assertIdentical(Path a, Path b, Set<String> excluded) {
        List<String> files = list(a, excluded);
        assertEquals(files, list(b, excluded), "file lists of " + a + " and " + b);
        for (String f : files) {
            try {
                assertArrayEquals(Files.readAllBytes(a.resolve(f)), Files.readAllBytes(b.resolve(f)),
                        f + " differs between " + a + " and " + b);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
