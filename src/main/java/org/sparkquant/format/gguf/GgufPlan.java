package org.sparkquant.format.gguf;

import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A GGUF file plan: every tensor's name, shape and type for a model and file type, with sizes — what
 * {@code inspect --gguf-type} prints. Bits per weight is tensor data bytes·8 / elements (llama-quantize's figure).
 */
public record GgufPlan(GgufModelDesc model, LlamaFileType fileType, List<GgufTensor> tensors) {
    public GgufPlan {
        tensors = List.copyOf(tensors);
    }

    public static GgufPlan of(GgufModelDesc model, LlamaFileType fileType, GgufRecipe.Options options) {
        return new GgufPlan(model, fileType, GgufRecipe.plan(model, fileType, options));
    }

    public static GgufPlan of(GgufModelDesc model, LlamaFileType fileType) {
        return of(model, fileType, GgufRecipe.Options.DEFAULT);
    }

    /** Tensor data bytes without alignment padding. */
    public long tensorBytes() {
        long n = 0;
        for (GgufTensor t : tensors) {
            n += t.bytes();
        }
        return n;
    }

    public long elements() {
        long n = 0;
        for (GgufTensor t : tensors) {
            n += t.elements();
        }
        return n;
    }

    public double bitsPerWeight() {
        return tensorBytes() * 8.0 / elements();
    }

    /** Exact size of the file written with this metadata (header, padding and every tensor padded). */
    public long fileSize(Map<String, GgufValue> metadata) {
        return GgufLayout.of(metadata, tensors).totalSize();
    }

    /** Elements per tensor type. */
    public Map<GgmlType, Long> elementsByType() {
        Map<GgmlType, Long> m = new EnumMap<>(GgmlType.class);
        for (GgufTensor t : tensors) {
            m.merge(t.type(), t.elements(), Long::sum);
        }
        return m;
    }

    /** The per-tensor table and totals, one tensor per line. */
    public String table() {
        StringBuilder b = new StringBuilder();
        int w = 6;
        for (GgufTensor t : tensors) {
            w = Math.max(w, t.name().length());
        }
        String fmt = "%-" + w + "s  %-22s  %-5s  %12s%n";
        b.append(String.format(Locale.ROOT, fmt, "tensor", "shape (ggml ne)", "type", "bytes"));
        for (GgufTensor t : tensors) {
            b.append(String.format(Locale.ROOT, fmt, t.name(), shape(t.ne()), t.type(), t.bytes()));
        }
        b.append(String.format(Locale.ROOT, "%d tensors, %d elements, %.2f MiB of tensor data, %.3f bits per weight"
                + " (%s, %s)%n", tensors.size(), elements(), tensorBytes() / 1048576.0, bitsPerWeight(), fileType,
                model.architecture()));
        StringBuilder mix = new StringBuilder();
        for (Map.Entry<GgmlType, Long> e : elementsByType().entrySet()) {
            if (mix.length() > 0) {
                mix.append(", ");
            }
            mix.append(String.format(Locale.ROOT, "%s %.1f%%", e.getKey(), 100.0 * e.getValue() / elements()));
        }
        b.append("elements by type: ").append(mix).append(System.lineSeparator());
        return b.toString();
    }

    static String shape(long[] ne) {
        StringBuilder s = new StringBuilder("[");
        for (int i = 0; i < ne.length; i++) {
            s.append(i == 0 ? "" : ", ").append(ne[i]);
        }
        return s.append(']').toString();
    }
}
