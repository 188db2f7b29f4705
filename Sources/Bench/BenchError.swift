/// Errors that stop a benchmark before or between levels (per-request failures are counted, not thrown).
public enum BenchError: Error, Equatable, CustomStringConvertible {
    case invalidBaseURL(String)
    case invalidGoodput(String)
    case invalidOption(String)
    case datasetUnreadable(path: String, reason: String)
    case datasetLine(source: String, line: Int, reason: String)
    case emptyDataset(String)
    case messagesNeedChatEndpoint
    case modelListFailed(url: String, reason: String)
    case noModels(url: String)

    public var description: String {
        switch self {
        case .invalidBaseURL(let url):
            "invalid --base-url \"\(url)\": give a URL such as http://127.0.0.1:8080 (scheme http or https)."
        case .invalidGoodput(let spec):
            "invalid --goodput objective \"\(spec)\": use ttft:MS, tpot:MS or e2el:MS with a positive number of milliseconds."
        case .invalidOption(let message):
            message
        case .datasetUnreadable(let path, let reason):
            "cannot read the dataset \(path): \(reason). Check the path given to --dataset."
        case .datasetLine(let source, let line, let reason):
            "\(source) line \(line): \(reason). Each line must be {\"prompt\": \"...\", \"max_tokens\": N} or {\"messages\": [...]}."
        case .emptyDataset(let source):
            "\(source) holds no prompts. Add JSONL lines or use --input-len/--output-len for synthetic prompts."
        case .messagesNeedChatEndpoint:
            "the dataset has chat \"messages\" but --endpoint is completions. Use --endpoint chat or a dataset of \"prompt\" lines."
        case .modelListFailed(let url, let reason):
            "could not list models at \(url): \(reason). Check that the server is running, or pass --model NAME."
        case .noModels(let url):
            "\(url) lists no models. Pass --model NAME."
        }
    }
}
