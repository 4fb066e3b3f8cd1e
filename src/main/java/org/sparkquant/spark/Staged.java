package org.sparkquant.spark;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;

/**
 * Binary forms of what a run stages in its work directory: Java objects (quantized blocks, Hessians, GPTQ factors)
 * and partitions of hidden states (raw little-endian floats, so a resumed run sees exactly the bits it left).
 */
final class Staged {
    private static final int HIDDEN_MAGIC = 0x53514853; // "SQHS"

    private Staged() {}

    static WorkDir.Writer object(Serializable value) {
        return out -> {
            ObjectOutputStream oos = new ObjectOutputStream(out);
            oos.writeObject(value);
            oos.flush();
        };
    }

    @SuppressWarnings("unchecked")
    static <T> T readObject(Storage storage, String uri) {
        try (InputStream in = storage.openStream(uri); ObjectInputStream ois = new ObjectInputStream(in)) {
            return (T) ois.readObject();
        } catch (IOException | ClassNotFoundException e) {
            if (e instanceof IOException io && Storage.unreachable(io) != null) {
                throw Storage.error("cannot read staged", uri, io);
            }
            throw SparkQuantException.internal("cannot read staged " + uri + ": " + e.getMessage(), e);
        }
    }

    static WorkDir.Writer hidden(List<SampleState> samples) {
        return out -> {
            DataOutputStream data = new DataOutputStream(out);
            data.writeInt(HIDDEN_MAGIC);
            data.writeInt(samples.size());
            for (SampleState s : samples) {
                data.writeInt(s.index());
                data.writeInt(s.tokens().length);
                data.writeInt(s.hidden().length);
                ByteBuffer buf = ByteBuffer.allocate(4 * (s.tokens().length + s.hidden().length))
                        .order(ByteOrder.LITTLE_ENDIAN);
                buf.asIntBuffer().put(s.tokens());
                buf.position(4 * s.tokens().length);
                buf.asFloatBuffer().put(s.hidden());
                data.write(buf.array());
            }
            data.flush();
        };
    }

    static List<SampleState> readHidden(Storage storage, String uri) {
        byte[] bytes = readAll(storage, uri);
        try (DataInputStream data = new DataInputStream(new ByteArrayInputStream(bytes))) {
            if (data.readInt() != HIDDEN_MAGIC) {
                throw SparkQuantException.badInput(uri + ": not a sparkquant hidden-state file");
            }
            int count = data.readInt();
            List<SampleState> out = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                int index = data.readInt();
                int tokens = data.readInt();
                int hidden = data.readInt();
                byte[] raw = new byte[4 * (tokens + hidden)];
                data.readFully(raw);
                ByteBuffer buf = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
                int[] ids = new int[tokens];
                buf.asIntBuffer().get(ids);
                buf.position(4 * tokens);
                float[] h = new float[hidden];
                buf.asFloatBuffer().get(h);
                out.add(new SampleState(index, ids, h));
            }
            return out;
        } catch (IOException e) {
            throw SparkQuantException.badInput(uri + ": truncated hidden-state file (" + e.getMessage() + ")");
        }
    }

    private static byte[] readAll(Storage storage, String uri) {
        try (InputStream in = storage.openStream(uri)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            in.transferTo(out);
            return out.toByteArray();
        } catch (IOException e) {
            throw Storage.error("cannot read", uri, e);
        }
    }

}
