package org.sparkquant.report;

import java.util.List;
import java.util.Locale;
import java.util.function.DoubleFunction;

/**
 * The report's charts as inline SVG: horizontal bars (one row per label, one bar per series) and grouped columns
 * (one group per label). Fixed pixel geometry, so a browser needs nothing but the markup; every text is escaped.
 */
final class Svg {
    static final int WIDTH = 900;
    private static final int BAR = 11;
    private static final int FONT = 12;

    private Svg() {}

    /** One series of a chart: its name (legend), fill colour and one value per label (NaN: no bar). */
    record Series(String name, String color, double[] values) {}

    /**
     * Rows of horizontal bars on a linear scale from zero, each bar labelled with its value; {@code notes} (may be
     * null) are printed at the end of each row.
     */
    static String horizontalBars(String title, List<String> labels, List<Series> series, DoubleFunction<String> format,
            List<String> notes) {
        double max = max(series);
        int labelWidth = Math.min(330, 16 + 7 * labels.stream().mapToInt(String::length).max().orElse(4));
        int noteWidth = notes == null ? 0 : 70;
        int valueWidth = 80;
        int plot = WIDTH - labelWidth - valueWidth - noteWidth;
        int rowHeight = series.size() * (BAR + 2) + 8;
        int legend = series.size() > 1 ? 22 : 0;
        int height = legend + labels.size() * rowHeight + 6;
        StringBuilder b = open(title, height);
        legend(b, series, labelWidth);
        for (int i = 0; i < labels.size(); i++) {
            int y = legend + i * rowHeight;
            b.append(text(labelWidth - 8, y + rowHeight / 2 + 4, "end", FONT, "#222", labels.get(i)));
            for (int s = 0; s < series.size(); s++) {
                double v = series.get(s).values()[i];
                if (Double.isNaN(v)) {
                    continue;
                }
                double w = max > 0 ? Math.max(1, plot * v / max) : 1;
                int by = y + 4 + s * (BAR + 2);
                b.append(String.format(Locale.ROOT,
                        "<rect class=\"bar\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
                                + "<title>%s: %s</title></rect>",
                        labelWidth, by, w, BAR, series.get(s).color(),
                        Html.escape(labels.get(i) + " · " + series.get(s).name()), Html.escape(format.apply(v))));
                b.append(text(labelWidth + w + 4, by + BAR - 1, "start", 10, "#444", format.apply(v)));
            }
            if (notes != null) {
                b.append(text(WIDTH - 4, y + rowHeight / 2 + 4, "end", FONT, "#222", notes.get(i)));
            }
        }
        b.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>",
                labelWidth, legend, labelWidth, height - 4));
        return b.append("</svg>\n").toString();
    }

    /** Groups of vertical columns, one group per label, with a value axis from zero. */
    static String columns(String title, List<String> labels, List<Series> series, DoubleFunction<String> format) {
        double max = max(series);
        double step = niceStep(max / 5);
        double top = step > 0 ? Math.ceil(max / step) * step : 1;
        int left = 70;
        int legend = 24;
        int plotHeight = 220;
        int bottom = 36;
        int height = legend + plotHeight + bottom;
        int plot = WIDTH - left - 10;
        double group = (double) plot / Math.max(1, labels.size());
        double bar = Math.max(1, group * 0.8 / series.size());
        StringBuilder b = open(title, height);
        legend(b, series, left);
        int y0 = legend + plotHeight;
        for (double t = 0; t <= top * 1.0001 && step > 0; t += step) {
            double y = y0 - plotHeight * t / top;
            b.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>",
                    left, y, WIDTH - 10, y));
            b.append(text(left - 6, y + 4, "end", 10, "#444", format.apply(t)));
        }
        int every = Math.max(1, (int) Math.ceil(labels.size() * 28.0 / plot));
        for (int i = 0; i < labels.size(); i++) {
            double gx = left + i * group + group * 0.1;
            for (int s = 0; s < series.size(); s++) {
                double v = series.get(s).values()[i];
                if (Double.isNaN(v)) {
                    continue;
                }
                double h = Math.max(1, plotHeight * v / top);
                b.append(String.format(Locale.ROOT,
                        "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                                + "<title>%s: %s</title></rect>",
                        gx + s * bar, y0 - h, bar, h, series.get(s).color(),
                        Html.escape(labels.get(i) + " · " + series.get(s).name()), Html.escape(format.apply(v))));
            }
            if (i % every == 0) {
                b.append(text(left + (i + 0.5) * group, y0 + 16, "middle", 11, "#222", labels.get(i)));
            }
        }
        b.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>",
                left, y0, WIDTH - 10, y0));
        return b.append("</svg>\n").toString();
    }

    /** 1, 2 or 5 times a power of ten, at least {@code raw}. */
    static double niceStep(double raw) {
        if (!(raw > 0) || Double.isInfinite(raw)) {
            return 0;
        }
        double p = Math.pow(10, Math.floor(Math.log10(raw)));
        for (double m : new double[] {1, 2, 5, 10}) {
            if (m * p >= raw) {
                return m * p;
            }
        }
        return 10 * p;
    }

    private static double max(List<Series> series) {
        double max = 0;
        for (Series s : series) {
            for (double v : s.values()) {
                if (!Double.isNaN(v)) {
                    max = Math.max(max, v);
                }
            }
        }
        return max;
    }

    private static StringBuilder open(String title, int height) {
        StringBuilder b = new StringBuilder();
        b.append(String.format(Locale.ROOT, "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
                + "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\" "
                + "font-family=\"DejaVu Sans, Arial, sans-serif\"><title>%s</title>", WIDTH, height, WIDTH, height,
                Html.escape(title), Html.escape(title)));
        return b;
    }

    private static void legend(StringBuilder b, List<Series> series, int x) {
        if (series.size() < 2) {
            return;
        }
        int at = x;
        for (Series s : series) {
            b.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"4\" width=\"12\" height=\"12\" fill=\"%s\"/>", at,
                    s.color()));
            b.append(text(at + 16, 14, "start", FONT, "#222", s.name()));
            at += 30 + 7 * s.name().length();
        }
    }

    private static String text(double x, double y, String anchor, int size, String color, String text) {
        return String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\" "
                + "fill=\"%s\">%s</text>", x, y, anchor, size, color, Html.escape(text));
    }
}
