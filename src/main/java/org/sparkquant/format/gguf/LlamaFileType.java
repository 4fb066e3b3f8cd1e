package org.sparkquant.format.gguf;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;
import org.sparkquant.SparkQuantException;

/**
 * llama.cpp's {@code llama_ftype}: the file-level quantization mix written to {@code general.file_type}. Each has a
 * default tensor type; {@link GgufRecipe} decides the per-tensor deviations the way llama-quantize does.
 */
public enum LlamaFileType {
    F32(0, GgmlType.F32),
    F16(1, GgmlType.F16),
    Q4_0(2, GgmlType.Q4_0),
    Q4_1(3, GgmlType.Q4_1),
    Q8_0(7, GgmlType.Q8_0),
    Q5_0(8, GgmlType.Q5_0),
    Q5_1(9, GgmlType.Q5_1),
    Q2_K(10, GgmlType.Q2_K),
    Q3_K_S(11, GgmlType.Q3_K),
    Q3_K_M(12, GgmlType.Q3_K),
    Q3_K_L(13, GgmlType.Q3_K),
    Q4_K_S(14, GgmlType.Q4_K),
    Q4_K_M(15, GgmlType.Q4_K),
    Q5_K_S(16, GgmlType.Q5_K),
    Q5_K_M(17, GgmlType.Q5_K),
    Q6_K(18, GgmlType.Q6_K),
    /** Needs an importance matrix for its Q2_K tensors (llama-quantize refuses it without one). */
    Q2_K_S(21, GgmlType.Q2_K),
    BF16(32, GgmlType.BF16);

    private final int id;
    private final GgmlType defaultType;

    LlamaFileType(int id, GgmlType defaultType) {
        this.id = id;
        this.defaultType = defaultType;
    }

    public int id() {
        return id;
    }

    /** The tensor type used where the recipe has no special rule ({@code llama_ftype_get_default_type}). */
    public GgmlType defaultType() {
        return defaultType;
    }

    /** Parses names as llama-quantize spells them: "Q4_K_M", "q8_0", "f16", also "MOSTLY_Q4_K_M". */
    public static LlamaFileType parse(String name) {
        String n = name.trim().toUpperCase(Locale.ROOT).replace('-', '_');
        if (n.startsWith("MOSTLY_")) {
            n = n.substring("MOSTLY_".length());
        } else if (n.equals("ALL_F32")) {
            n = "F32";
        }
        for (LlamaFileType t : values()) {
            if (t.name().equals(n)) {
                return t;
            }
        }
        throw SparkQuantException.badInput("unknown GGUF file type '" + name + "'; expected one of "
                + Arrays.stream(values()).map(Enum::name).collect(Collectors.joining(", ")));
    }

    public static LlamaFileType fromIdOrNull(long id) {
        for (LlamaFileType t : values()) {
            if (t.id == id) {
                return t;
            }
        }
        return null;
    }
}
