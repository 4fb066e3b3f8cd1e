package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The manifest of a finished output, with checksums taken while the files were written. */
class OutputManifestTest {
    @TempDir
    Path dir;

    @Test
    void checksumsTakenWhileWritingEqualThoseOfTheFiles() throws Exception {
        Storage storage = Storage.local();
        OutputManifest.Checksums sums = new OutputManifest.Checksums();
        Storage writing = storage.recording(sums);
        String out = dir.resolve("out").toString();
        byte[] big = new byte[3 << 20];
        for (int i = 0; i < big.length; i++) {
            big[i] = (byte) (i * 31 + (i >> 11));
        }
        try (OutputStream s = writing.create(Storage.resolve(out, "model.safetensors"))) {
            s.write(big, 0, 1000);
            s.write(big[1000]);
            s.write(big, 1001, big.length - 1001);
        }
        writing.writeString(Storage.resolve(out, "config.json"), "{}\n");
        writing.writeString(Storage.resolve(out, "config.json"), "{\"a\": 1}\n"); // written again: the last one counts
        storage.writeString(Storage.resolve(out, "README.md"), "not recorded\n"); // read back instead
        List<OutputManifest.Entry> recorded = OutputManifest.write(storage, out, "test", sums);
        assertEquals(OutputManifest.write(storage, out, "test"), recorded, "the same entries as reading every file");
        assertEquals(List.of(), OutputManifest.verify(storage, out));
    }

    @Test
    void theRecordedChecksumIsWhatTheManifestStates() throws Exception {
        // proof that the manifest takes the checksum recorded while writing rather than reading the file again: a
        // file changed after it was written (same size) is then caught by verify, not hidden by the manifest
        Storage storage = Storage.local();
        OutputManifest.Checksums sums = new OutputManifest.Checksums();
        String out = dir.resolve("out").toString();
        String uri = Storage.resolve(out, "shard.bin");
        storage.recording(sums).writeString(uri, "AAAA");
        Files.writeString(dir.resolve("out/shard.bin"), "BBBB", StandardCharsets.UTF_8);
        OutputManifest.write(storage, out, "test", sums);
        List<String> problems = OutputManifest.verify(storage, out);
        assertEquals(1, problems.size(), problems.toString());
        assertTrue(problems.get(0).startsWith("shard.bin: sha256"), problems.toString());
        // a size that no longer matches the record is read again
        Files.writeString(dir.resolve("out/shard.bin"), "CCCCC", StandardCharsets.UTF_8);
        OutputManifest.write(storage, out, "test", sums);
        assertEquals(List.of(), OutputManifest.verify(storage, out));
    }
}
