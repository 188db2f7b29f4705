import ArgumentParser

@main
struct AutoGLM: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoglm",
        abstract: "Deploy GLM-4 and Llama-family models: serve, generate, chat, check and plan.",
        subcommands: [
            GenerateCommand.self, ChatCommand.self, PerplexityCommand.self, EngineBenchCommand.self, VisionBenchCommand.self,
            ServeCommand.self, BenchCommand.self, DoctorCommand.self, PlanCommand.self, ConfigCommand.self, ModelsCommand.self,
            ConvertCommand.self, RolloutCommand.self, KeysCommand.self, AuditCommand.self,
        ])
}
