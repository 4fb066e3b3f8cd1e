package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sparkquant.io.SafetensorsFileTest.assertMessage;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Local storage: path handling and the messages of the errors a user meets. */
class StorageTest {
    private static final Storage STORAGE = Storage.local();

    @TempDir
    Path dir;

    @Test
    void resolvesPathsAndUris() {
        assertEquals("s3a://bucket/model/config.json", Storage.resolve("s3a://bucket/model", "config.json"));
        assertEquals("s3a://bucket/model/config.json", Storage.resolve("s3a://bucket/model/", "config.json"));
        assertEquals("file:" + dir.resolve("x.json"), Storage.resolve(dir.toString(), "x.json"));
        assertEquals("file:" + dir.resolve("x.json"), Storage.resolve("file://" + dir, "x.json"));
        assertTrue(Storage.path("relative/dir").isAbsolute());
        // characters a URI does not allow are fine in a local path
        assertEquals("file:" + dir.resolve("a b%c"), Storage.resolve(dir.toString(), "a b%c"));
        // and a resolved name inside a directory with such characters names that file, not one under the cwd
        String inner = Storage.resolve(Storage.resolve(dir.toString(), "out a<b>"), "config.json");
        assertEquals(dir.resolve("out a<b>/config.json").toUri(), Storage.path(inner).toUri());
    }

    @Test
    void badPathsAreBadInput() {
        assertMessage(() -> Storage.path(""), "empty path");
        assertMessage(() -> Storage.path("bad\0path"), "invalid path");
        assertMessage(() -> Storage.resolve(dir.toString(), ""), dir.toString(), "invalid file name ''");
        assertMessage(() -> Storage.resolve(dir.toString(), "c:model.safetensors"), "invalid file name 'c:model");
    }

    @Test
    void roundTripAndErrorsNameTheFile() throws Exception {
        String file = dir.resolve("sub/dir/f.txt").toString();
        STORAGE.writeString(file, "héllo");
        assertTrue(STORAGE.exists(file));
        assertEquals("héllo", STORAGE.readString(file));
        assertEquals(6, STORAGE.length(file));
        assertTrue(STORAGE.isDirectory(dir.resolve("sub").toString()));
        assertFalse(STORAGE.isDirectory(file));
        assertEquals(List.of("f.txt"), STORAGE.list(dir.resolve("sub/dir").toString()));
        assertFalse(Files.exists(dir.resolve("sub/dir/.f.txt.crc")), "no checksum side files");
        try (RandomAccessInput in = STORAGE.open(file)) {
            byte[] b = new byte[2];
            in.readFully(1, b, 0, 2);
            assertEquals("é", new String(b, java.nio.charset.StandardCharsets.UTF_8));
            assertMessage(() -> in.readFully(5, new byte[2], 0, 2), file, "past the end of the file (6 bytes)");
            assertMessage(() -> in.readFully(-1, new byte[2], 0, 1), file, "past the end");
        }
        String missing = dir.resolve("missing.json").toString();
        assertMessage(() -> STORAGE.readString(missing), missing, "no such file");
        assertMessage(() -> STORAGE.open(missing), missing, "no such file");
        assertMessage(() -> STORAGE.length(missing), missing, "no such file");
        assertMessage(() -> STORAGE.list(missing), missing, "no such directory");
        assertFalse(STORAGE.exists(missing));
        assertFalse(STORAGE.delete(missing));
    }
}
