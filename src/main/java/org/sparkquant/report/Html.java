package org.sparkquant.report;

import java.util.Locale;

/** Escaping and number formats of the report; every string that comes from a run goes through {@link #escape}. */
final class Html {
    private Html() {}

    /** Text safe in HTML element content and in double- or single-quoted attributes (also inside SVG). */
    static String escape(String s) {
        if (s == null) {
            return "";
        }
        StringBuilder b = new StringBuilder(s.length() + 16);
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '&' -> b.append("&amp;");
                case '<' -> b.append("&lt;");
                case '>' -> b.append("&gt;");
                case '"' -> b.append("&quot;");
                case '\'' -> b.append("&#39;");
                default -> {
                    // control characters other than tab and newline are not allowed in HTML text
                    if (c < 0x20 && c != '\t' && c != '\n') {
                        b.append("&#xFFFD;");
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.toString();
    }

    /** Four significant digits, or a dash for a missing value. */
    static String num(double v) {
        if (Double.isNaN(v)) {
            return "–";
        }
        if (v == 0) {
            return "0";
        }
        double a = Math.abs(v);
        if (a >= 1e6 || a < 1e-3) {
            return String.format(Locale.ROOT, "%.3e", v);
        }
        String s = String.format(Locale.ROOT, "%.4g", v);
        if (s.contains(".") && !s.contains("e")) {
            s = s.replaceAll("0+$", "").replaceAll("\\.$", "");
        }
        return s;
    }

    /** Seconds as "12.3 s" or "4:05 min". */
    static String seconds(double s) {
        if (Double.isNaN(s)) {
            return "–";
        }
        if (s < 60) {
            return String.format(Locale.ROOT, "%.1f s", s);
        }
        long r = Math.round(s);
        return r >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d h", r / 3600, r / 60 % 60, r % 60)
                : String.format(Locale.ROOT, "%d:%02d min", r / 60, r % 60);
    }

    static String bytes(double b) {
        if (Double.isNaN(b) || b < 0) {
            return "–";
        }
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        int u = 0;
        while (b >= 1024 && u < units.length - 1) {
            b /= 1024;
            u++;
        }
        return u == 0 ? String.format(Locale.ROOT, "%.0f B", b) : String.format(Locale.ROOT, "%.1f %s", b, units[u]);
    }

    static String percent(double ratio) {
        return Double.isNaN(ratio) ? "–" : String.format(Locale.ROOT, "%.1f%%", 100 * ratio);
    }
}
