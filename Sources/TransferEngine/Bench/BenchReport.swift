/// Renders a bench report: a terminal table, JSON, and an SVG bar chart.
public enum BenchReport {
    /// Wings-style reference figures from the issue (this machine type, medians) — context only;
    /// every ratio printed is against baselines measured in the same run.
    static let wingsReference: [String: String] = ["mixed": "137 MB/s", "large": "182 MB/s", "tiny": "14,000 files/s"]

    public static func table(_ report: BenchRunner.Report) -> String {
        var lines: [String] = []
        let header = ["corpus", "mode", "sent as", "MB/s", "files/s", "sent/vol", "commit s", "send CPU s", "send RSS", "recv CPU s", "recv RSS"]
        var rows: [[String]] = [header]
        for series in report.series {
            let last = series.runs.last
            rows.append([
                series.corpus, series.mode, last?.compression ?? "-",
                ByteCount.fixed(series.median(\.mbPerSecond), 1), ByteCount.fixed(series.median(\.filesPerSecond), 0),
                ByteCount.fixed(series.median(\.ratio), 3), ByteCount.fixed(series.median(\.seconds), 2),
                ByteCount.fixed(series.median(\.senderCPU), 2), ByteCount.fixed(series.median(\.senderRSSMiB), 1) + " MiB",
                series.runs.first?.daemonCPU == nil ? "-" : ByteCount.fixed(series.median { $0.daemonCPU ?? 0 }, 2),
                series.runs.first?.daemonRSSMiB == nil ? "-" : ByteCount.fixed(series.median { $0.daemonRSSMiB ?? 0 }, 1) + " MiB",
            ])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            lines.append(row.indices.map { i in i < 3 ? row[i].padding(widths[i]) : row[i].leftAligned(widths[i]) }.joined(separator: "  "))
        }
        let runs = report.series.first?.runs.count ?? 0
        lines.append("(medians of \(runs) run\(runs == 1 ? "" : "s"); MB/s of volume bytes; sent/vol: bytes on the wire per volume byte; commit s: time to verified commit)")
        let corpora = report.series.map(\.corpus).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        for corpus in corpora {
            let baselines = report.baselines.filter { $0.corpus == corpus }
            guard !baselines.isEmpty else { continue }
            lines.append("")
            lines.append("\(corpus): same volume, same run — ours as a multiple of each baseline"
                + (wingsReference[corpus].map { " (Wings-style reference on this machine type: \($0))" } ?? ""))
            for baseline in baselines {
                let ours = report.series.filter { $0.corpus == corpus }.map { series in
                    "\(series.mode) \(ByteCount.fixed(series.median(\.mbPerSecond) / baseline.mbPerSecond, 2))×"
                }
                lines.append("  \(baseline.name.padding(26)) \(ByteCount.fixed(baseline.mbPerSecond, 1).leftAligned(8)) MB/s   \(ours.joined(separator: ", "))")
            }
        }
        return lines.joined(separator: "\n")
    }

    public static func json(_ report: BenchRunner.Report) -> JSONValue {
        .object([
            "series": .array(report.series.map { series in
                .object([
                    "corpus": .string(series.corpus), "mode": .string(series.mode),
                    "volume_bytes": .number(Double(report.volumeBytes[series.corpus] ?? 0)),
                    "files": .number(Double(report.volumeFiles[series.corpus] ?? 0)),
                    "median": .object([
                        "mb_per_second": .number(series.median(\.mbPerSecond)), "files_per_second": .number(series.median(\.filesPerSecond)),
                        "compression_ratio": .number(series.median(\.ratio)), "seconds_to_commit": .number(series.median(\.seconds)),
                        "sender_cpu_seconds": .number(series.median(\.senderCPU)), "sender_peak_rss_mib": .number(series.median(\.senderRSSMiB)),
                        "daemon_cpu_seconds": .number(series.median { $0.daemonCPU ?? 0 }),
                        "daemon_peak_rss_mib": .number(series.median { $0.daemonRSSMiB ?? 0 }),
                    ]),
                    "runs": .array(series.runs.map { run in
                        .object([
                            "mb_per_second": .number(run.mbPerSecond), "files_per_second": .number(run.filesPerSecond),
                            "compression": .string(run.compression), "compression_ratio": .number(run.ratio),
                            "seconds_to_commit": .number(run.seconds), "volume_bytes": .number(Double(run.volumeBytes)),
                            "archive_bytes": .number(Double(run.archiveBytes)), "files": .number(Double(run.files)),
                            "sender_cpu_seconds": .number(run.senderCPU), "sender_peak_rss_mib": .number(run.senderRSSMiB),
                            "daemon_cpu_seconds": run.daemonCPU.map(JSONValue.number) ?? .null,
                            "daemon_peak_rss_mib": run.daemonRSSMiB.map(JSONValue.number) ?? .null,
                        ])
                    }),
                ])
            }),
            "baselines": .array(report.baselines.map { baseline in
                .object([
                    "corpus": .string(baseline.corpus), "name": .string(baseline.name), "command": .string(baseline.command),
                    "mb_per_second": .number(baseline.mbPerSecond),
                    "ratios": .object(Dictionary(uniqueKeysWithValues: report.series.filter { $0.corpus == baseline.corpus }.map {
                        ($0.mode, JSONValue.number($0.median(\.mbPerSecond) / baseline.mbPerSecond))
                    })),
                ])
            }),
            // What the figures depend on besides us (e.g. the work directory's file system).
            "notes": .array(report.notes.map(JSONValue.string)),
        ])
    }

    /// A horizontal bar chart of MB/s per corpus: our modes (dark) next to the baselines (grey).
    public static func svg(_ report: BenchRunner.Report) -> String {
        var bars: [(group: String, label: String, value: Double, ours: Bool)] = []
        let corpora = report.series.map(\.corpus).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        for corpus in corpora {
            for series in report.series where series.corpus == corpus {
                bars.append((corpus, "transfer-engine, \(series.mode)", series.median(\.mbPerSecond), true))
            }
            for baseline in report.baselines where baseline.corpus == corpus {
                bars.append((corpus, baseline.name, baseline.mbPerSecond, false))
            }
        }
        let maxValue = max(1, bars.map(\.value).max() ?? 1)
        let rowHeight = 22
        let labelWidth = 230
        let barWidth = 460
        var y = 40
        var body = ""
        var lastGroup = ""
        for bar in bars {
            if bar.group != lastGroup {
                y += 10
                body += "<text x=\"10\" y=\"\(y + 12)\" font-weight=\"bold\">\(escape(bar.group))</text>\n"
                y += rowHeight
                lastGroup = bar.group
            }
            let width = Int(Double(barWidth) * bar.value / maxValue)
            let color = bar.ours ? "#1f5fa8" : "#a8a8a8"
            body += "<text x=\"\(labelWidth - 6)\" y=\"\(y + 14)\" text-anchor=\"end\">\(escape(bar.label))</text>\n"
            body += "<rect x=\"\(labelWidth)\" y=\"\(y + 2)\" width=\"\(max(width, 1))\" height=\"16\" fill=\"\(color)\"/>\n"
            body += "<text x=\"\(labelWidth + max(width, 1) + 6)\" y=\"\(y + 14)\">\(ByteCount.fixed(bar.value, 0)) MB/s</text>\n"
            y += rowHeight
        }
        let height = y + 20
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(labelWidth + barWidth + 110)" height="\(height)" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="22" font-size="15" font-weight="bold">Verified transfer throughput (MB/s of volume bytes; higher is better)</text>
            \(body)</svg>

            """
    }

    static func escape(_ text: String) -> String {
        text.replacingByte("&", with: "&amp;").replacingByte("<", with: "&lt;").replacingByte(">", with: "&gt;")
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    func leftAligned(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
