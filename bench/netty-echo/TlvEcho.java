// Netty 4.1 TLV echo server: the baseline of issue 5.
//
// Frames are u16 id, u16 body length, body (big-endian). One NioEventLoopGroup(1)
// serves both accept and I/O; LengthFieldBasedFrameDecoder cuts frames and the
// handler writes each one back unchanged, flushing once per read batch.
//
//   java -cp BUILD:JARS TlvEcho PORT     (PORT 0 = any; prints "listening on 127.0.0.1:PORT")

import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.LengthFieldBasedFrameDecoder;
import java.net.InetSocketAddress;

public final class TlvEcho {
  @ChannelHandler.Sharable
  static final class Echo extends ChannelInboundHandlerAdapter {
    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      ctx.write(msg); // the decoder's ByteBuf (header + body); ownership passes to the write
    }

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) {
      ctx.flush();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      ctx.close();
    }
  }

  public static void main(String[] args) throws Exception {
    int port = args.length > 0 ? Integer.parseInt(args[0]) : 10086;
    EventLoopGroup group = new NioEventLoopGroup(1); // one event loop: accept and I/O
    Echo echo = new Echo();
    try {
      ServerBootstrap b = new ServerBootstrap()
          .group(group, group)
          .channel(NioServerSocketChannel.class)
          .childOption(ChannelOption.TCP_NODELAY, true)
          .childHandler(new ChannelInitializer<SocketChannel>() {
            @Override
            protected void initChannel(SocketChannel ch) {
              // maxFrameLength 4 + 65535, length field at offset 2, 2 bytes, no adjustment, strip nothing
              ch.pipeline().addLast(new LengthFieldBasedFrameDecoder(4 + 65535, 2, 2, 0, 0), echo);
            }
          });
      Channel ch = b.bind(new InetSocketAddress("127.0.0.1", port)).sync().channel();
      InetSocketAddress bound = (InetSocketAddress) ch.localAddress();
      System.out.println("listening on 127.0.0.1:" + bound.getPort());
      System.out.flush();
      ch.closeFuture().sync();
    } finally {
      group.shutdownGracefully();
    }
  }
}
