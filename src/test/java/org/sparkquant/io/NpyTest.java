package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;
import org.sparkquant.testing.TestPython;

class NpyTest {
    @Test
    void roundTripsEachType() throws Exception {
        float[] f = {1.5f, -0f, Float.MIN_VALUE, Float.NaN, 3e38f, -1};
        double[] d = {Math.PI, -1e-300, Double.MAX_VALUE, 0, 1, 2};
        int[] i = {Integer.MIN_VALUE, -1, 0, 1, Integer.MAX_VALUE, 42};
        byte[] u = {0, 1, (byte) 200, (byte) 255, 7, 8};
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        Npy.write(out, f, 2, 3);
        Npy.Array a = Npy.read(new ByteArrayInputStream(out.toByteArray()), "f");
        assertEquals(Npy.DType.FLOAT32, a.dtype());
        assertArrayEquals(new long[] {2, 3}, a.shape());
        assertArrayEquals(f, a.floats());
        assertEquals(0, (out.size() - 24) % 64, "header padded to a multiple of 64 bytes");
        out.reset();
        Npy.write(out, d, 6);
        assertArrayEquals(d, Npy.read(new ByteArrayInputStream(out.toByteArray()), "d").doubles());
        out.reset();
        Npy.write(out, i, 3, 2);
        assertArrayEquals(i, Npy.read(new ByteArrayInputStream(out.toByteArray()), "i").ints());
        out.reset();
        Npy.writeUint8(out, u, 6);
        Npy.Array ua = Npy.read(new ByteArrayInputStream(out.toByteArray()), "u");
        assertEquals(200, ua.longs()[2]);
        assertEquals(255, ua.ints()[3]);
        assertEquals(out.size() - 6, new String(out.toByteArray(), StandardCharsets.ISO_8859_1).indexOf('\n') + 1,
                "header ends with a newline right before the data");
    }

    @Test
    void rejectsWhatItCannotRead() {
        byte[] notNpy = "hello world, not an npy file".getBytes(StandardCharsets.US_ASCII);
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> Npy.read(new ByteArrayInputStream(notNpy), "x.npy"));
        assertTrue(e.getMessage().startsWith("x.npy: not an npy file"), e.getMessage());
        assertThrows(SparkQuantException.class, () -> Npy.read(new ByteArrayInputStream(header(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }")), "f.npy"));
        e = assertThrows(SparkQuantException.class, () -> Npy.read(new ByteArrayInputStream(header(
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }")), "b.npy"));
        assertTrue(e.getMessage().contains("unsupported npy dtype '>f4'"), e.getMessage());
        e = assertThrows(SparkQuantException.class, () -> Npy.read(new ByteArrayInputStream(header(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }")), "t.npy"));
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
    }

    private static byte[] header(String dict) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0});
        byte[] text = (dict + "\n").getBytes(StandardCharsets.US_ASCII);
        out.write(text.length & 0xFF);
        out.write(text.length >> 8);
        out.write(text);
        return out.toByteArray();
    }

    /** Files written here load in numpy with the same values, and numpy's files (v1 and v2 headers) load here. */
    @Test
    void numpyAgrees(@TempDir Path dir) throws Exception {
        Path python = TestPython.require("numpy");
        Npy.write(dir.resolve("j.npy"), new float[] {1, 2, 3, 4.5f, -6, 7}, 3, 2);
        Npy.write(dir.resolve("s.npy"), new double[] {2.5}, 1);
        String script = String.join("\n",
                "import numpy as np, sys",
                "d = sys.argv[1]",
                "a = np.load(d + '/j.npy'); assert a.dtype == np.float32 and a.shape == (3, 2), (a.dtype, a.shape)",
                "assert a[1, 1] == 4.5 and a[2, 0] == -6",
                "assert np.load(d + '/s.npy')[0] == 2.5",
                "np.save(d + '/p.npy', np.arange(12, dtype=np.int32).reshape(3, 4))",
                "np.lib.format.write_array(open(d + '/v2.npy', 'wb'), np.ones((2, 2)), version=(2, 0))",
                "np.savez_compressed(d + '/z.npz', a=np.float32([1, 2]), b=np.uint8([255]))");
        TestPython.check(python, List.of("-c", script, dir.toString()), 60);
        Npy.Array p = Npy.read(dir.resolve("p.npy"));
        assertArrayEquals(new long[] {3, 4}, p.shape());
        assertEquals(11, p.ints()[11]);
        assertArrayEquals(new double[] {1, 1, 1, 1}, Npy.read(dir.resolve("v2.npy")).doubles());
        var z = Npy.readNpz(dir.resolve("z.npz"));
        assertArrayEquals(new float[] {1, 2}, z.get("a").floats());
        assertEquals(255, z.get("b").ints()[0]);
        assertTrue(Files.size(dir.resolve("j.npy")) == 128 + 24);
    }
}
