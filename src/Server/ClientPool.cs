using System.Threading.Channels;
using Kernels.Runtime.Chat;

namespace Kernels.Server;

/// <summary>
/// A fixed set of chat clients, one KV cache each (<c>--parallel N</c>): a request rents a free one
/// and waits in line when all are busy.
/// </summary>
internal sealed class ClientPool : IDisposable
{
    private readonly LocalChatClient[] _clients;
    private readonly Channel<LocalChatClient> _free;
    private int _waiting;
    private long _cancelled;

    public ClientPool(IEnumerable<LocalChatClient> clients)
    {
        _clients = clients.ToArray();
        if (_clients.Length == 0)
        {
            throw new ArgumentException("a pool needs at least one client");
        }
        _free = Channel.CreateUnbounded<LocalChatClient>();
        foreach (var c in _clients)
        {
            _free.Writer.TryWrite(c);
        }
    }

    public int Size => _clients.Length;

    /// <summary>Requests waiting for a client.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    /// <summary>Clients serving a request now.</summary>
    public int Busy => _clients.Length - _free.Reader.Count;

    /// <summary>Generations stopped because their client went away (or the request was cancelled).</summary>
    public long Cancelled => Interlocked.Read(ref _cancelled);

    public void CountCancelled() => Interlocked.Increment(ref _cancelled);

    public async Task<Lease> RentAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _waiting);
        try
        {
            return new Lease(this, await _free.Reader.ReadAsync(cancellationToken));
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    public readonly struct Lease(ClientPool pool, LocalChatClient client) : IDisposable
    {
        public LocalChatClient Client => client;

        public void Dispose() => pool._free.Writer.TryWrite(client);
    }

    public void Dispose()
    {
        foreach (var c in _clients)
        {
            c.Dispose();
        }
    }
}
