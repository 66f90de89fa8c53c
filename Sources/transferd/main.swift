import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

// Thin entry point: all parsing and behaviour live in TransferEngine.DaemonCommand.
ProcessSetup.configureMemory()
ProcessSetup.raiseOpenFileLimit()
SignalWaiter.blockTerminationSignals(hangup: true)
exit(DaemonCommand.main(Array(CommandLine.arguments.dropFirst())))
